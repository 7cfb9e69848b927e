"""Seconds from `search-api serve` to `/v1/ready` 200 on a fresh data folder, as a new user meets it.

Run: ``uv run search-eval bench first_start [--runs 3] [--warm-cache]``

Each run starts ``python -m search_api.cli serve`` (``eval.server.server_process``: what ``uv run
search-api serve`` runs once the environment is installed) with ``SEARCH_DATA_DIR`` pointing at
a new empty folder, polls ``/v1/ready`` every 50 ms, and records the time to its first 200 and
the phases the server reported on the way (building the model, which `serve` runs in a child
process beside its own imports, the intent head, opening the store, ingesting the fixtures).

Every run gets a model cache (``KB_MODEL_CACHE``, see ``retrieval.encoders.build_cache``) of its
own, empty: a machine that has never built the model. With ``--warm-cache`` the runs after the
first share the first run's cache: a second data folder on a machine that has built the model
once, which copies the build instead of making it.

Writes ``eval/reports/first_start/first_start.json`` (and ``.md``) unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.bench.results import write_result
from eval.server import server_process
from retrieval.encoders.build_cache import ENV_VAR
from retrieval.settings import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "eval" / "reports" / "first_start" / "first_start.json"
DEADLINE_S = 600.0
"""Give up on a run after this long (a start that slow is a failure to report, not to wait on)."""


def _ready(url: str) -> tuple[int, dict[str, Any]]:
    """`/v1/ready`'s status and body; 0 while nothing answers yet."""
    try:
        with urllib.request.urlopen(f"{url}/v1/ready", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def one_start(data_dir: Path, model_cache: Path) -> dict[str, Any]:
    """Start a server on `data_dir`, time it to ready, stop it; the phases seen, with their times."""
    started = time.perf_counter()
    phases: list[tuple[float, str]] = []
    with server_process(data_dir, env={ENV_VAR: str(model_cache)}) as (url, proc):
        while True:
            elapsed = time.perf_counter() - started
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with status {proc.returncode} before it was ready")
            if elapsed > DEADLINE_S:
                raise RuntimeError(f"not ready after {DEADLINE_S:.0f} s")
            status, body = _ready(url)
            if status == 200:
                return {"ready_s": round(elapsed, 3), "phases": phases}
            detail = str(body.get("detail") or "")
            if detail and (not phases or phases[-1][1] != detail):
                phases.append((round(elapsed, 3), detail))
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> None:
    """Time several first starts; print and write the median and each run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warm-cache", action="store_true", help="runs after the first share the first run's model cache"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-first-start-") as tmp_s:
        tmp = Path(tmp_s)
        for i in range(args.runs):
            data = tmp / f"data-{i}"
            data.mkdir()
            warm = args.warm_cache and i > 0
            result = one_start(data, tmp / ("cache-0" if warm else f"cache-{i}"))
            result["models_reused"] = warm
            runs.append(result)
            print(f"run {i + 1}: ready in {result['ready_s']:.2f} s  phases {result['phases']}")
    fresh = [r["ready_s"] for r in runs if not r["models_reused"]]
    reused = [r["ready_s"] for r in runs if r["models_reused"]]
    figures: dict[str, Any] = {"runs": runs, "fresh_median_s": statistics.median(fresh)}
    lines = [f"first start, fresh data folder: median {figures['fresh_median_s']:.2f} s over {len(fresh)}"]
    if reused:
        figures["models_reused_median_s"] = statistics.median(reused)
        median = figures["models_reused_median_s"]
        lines.append(f"model in the machine's model cache: median {median:.2f} s over {len(reused)}")
    print("\n".join(lines))
    write_result(args.out, figures, markdown="\n\n".join(lines))


if __name__ == "__main__":
    main()
