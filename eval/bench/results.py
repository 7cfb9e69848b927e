"""Where a benchmark's figures go: one JSON file with the machine and the code they were measured on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrieval.settings import PROJECT_ROOT


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """When, on what and from which commit a run was made, and how busy the machine was."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return out.stdout.strip()

    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(argv if argv is not None else sys.argv),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain")),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_result(path: Path, figures: Mapping[str, Any], *, markdown: str | None = None) -> list[Path]:
    """Write `figures` plus their provenance as JSON to `path` (and `markdown` beside it, `.md`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"provenance": provenance(), **figures}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    written = [path]
    if markdown is not None:
        md = path.with_suffix(".md")
        md.write_text(markdown if markdown.endswith("\n") else markdown + "\n", encoding="utf-8")
        written.append(md)
    return written
