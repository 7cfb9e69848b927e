"""`search-eval` and `python -m eval`: the commands a user types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.cli import main, resolve_dataset
from retrieval.settings import PROJECT_ROOT, Settings
from tests.conftest import CMRC_DEV

pytestmark = pytest.mark.unit


def test_python_dash_m_eval_is_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eval", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for command in ("quality", "latency", "report", "convert-cmrc", "convert-fixtures"):
        assert command in done.stdout


def test_convert_cmrc_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["convert-cmrc", "--input", str(CMRC_DEV), "--level", "paragraph", "--out", str(tmp_path)]) == 0
    )
    assert "848 documents, 3219/3219 questions kept" in capsys.readouterr().out
    assert json.loads((tmp_path / "conversion.json").read_text())["level"] == "paragraph"
    assert len((tmp_path / "corpus.jsonl").read_text().splitlines()) == 848


def test_dataset_shortcuts_convert_into_the_data_folder(settings: Settings) -> None:
    path, name = resolve_dataset("cmrc-chunk", settings, CMRC_DEV, quiet=True)
    assert path == settings.data.dir / "datasets" / "cmrc-chunk" and name == "cmrc-chunk"
    assert json.loads((path / "conversion.json").read_text())["settings"] == {
        "max_chars": settings.chunking.max_chars,
        "min_chars": settings.chunking.min_chars,
    }


def test_bad_quality_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["quality", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a folder nor one of" in capsys.readouterr().err
    (tmp_path / "ds").mkdir()
    assert (
        main(["quality", "--dataset", str(tmp_path / "ds"), "--modes", "bm25,magic", "--out", str(tmp_path)])
        == 2
    )
    assert "unknown mode" in capsys.readouterr().err
