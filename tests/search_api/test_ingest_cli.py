"""`search-api ingest`: the bulk command with the real model, its reruns and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.encoders.build import BuiltModel
from search_api.cli import main
from tests.conftest import seed_model

pytestmark = pytest.mark.integration


def _docs(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _doc(i: int) -> str:
    return json.dumps(
        {"id": f"d{i}", "title": f"沈青崖{i}", "kind": "character", "text": f"沈青崖{i}是玄霜城的剑客。"},
        ensure_ascii=False,
    )


@pytest.fixture
def data_dir(tmp_path: Path, built_model: BuiltModel, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    seed_model(data, built_model)
    monkeypatch.setenv("SEARCH_DATA_DIR", str(data))
    return data


def test_ingest_twice_reports_the_same_collection(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _docs(tmp_path / "docs.jsonl", [_doc(i) for i in range(7)])
    assert main(["ingest", str(source), "--batch", "3", "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "ingested 7 documents, 7 chunks" in first
    assert main(["ingest", str(source), "--batch", "3", "--progress"]) == 0
    again = capsys.readouterr()
    assert "ingested 7 documents, 7 chunks" in again.out
    assert "7 docs, 7 chunks" in again.err  # the bar's last state
    assert not list((data_dir / "collections").glob("*.ingest-*.json"))  # no checkpoint left behind


def test_a_bad_line_exits_2_naming_it(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _docs(tmp_path / "docs.jsonl", [_doc(0), _doc(1), "{not json", _doc(3)])
    assert main(["ingest", str(source), "--batch", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "docs.jsonl:3:" in err and "rerun resumes" in err
    # The batch before the bad line is in, and the checkpoint points past it.
    (checkpoint,) = (data_dir / "collections").glob("*.ingest-*.json")
    assert json.loads(checkpoint.read_text(encoding="utf-8"))["documents"] == 2


def test_a_missing_file_or_bad_batch_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(tmp_path / "nope.jsonl")]) == 2
    assert "is not a file" in capsys.readouterr().err
    source = _docs(tmp_path / "docs.jsonl", [_doc(0)])
    assert main(["ingest", str(source), "--batch", "0"]) == 2
    assert "--batch must be >= 1" in capsys.readouterr().err
