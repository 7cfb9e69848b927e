"""Reports over run folders: markdown, JSON and real PNG files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.confusion import ConfusionMatrix
from eval.report import build_report, read_run_folder

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _quality_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    metrics = {
        "bm25": {"recall@10": 0.9, "ndcg@10": 0.8, "mrr@10": 0.75, "recall@100": 0.98},
        "hybrid": {"recall@10": 0.95, "ndcg@10": 0.85, "mrr@10": 0.8, "recall@100": 0.99},
    }
    results = {
        "kind": "quality",
        "dataset": {"name": "tiny"},
        "metrics": metrics,
        "latency_ms": {m: {"count": 3, "p50_ms": 5.0, "p95_ms": 9.0} for m in metrics},
        "config": {"model_id": "m"},
        "provenance": {"timestamp": "t"},
        "comparison": {"stat_test": "student", "max_p": 0.05, "table": "#  Model\n-- -----\na  bm25"},
    }
    (root / "results.json").write_text(json.dumps(results))
    (root / "latencies.json").write_text(
        json.dumps({"took_ms": {"bm25": [3.0, 4.0, 5.0], "hybrid": [6.0, 7.0, 30.0]}})
    )
    return root


def _latency_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    summary = {
        "kind": "latency",
        "config": {"mode": "hybrid", "concurrency": 2},
        "requests": 4,
        "qps": 12.5,
        "error_rate": 0.25,
        "latency_ms": {"all": {"count": 3, "p95_ms": 40.0}, "cached": {"count": 1}, "uncached": {"count": 2}},
        "budget_ms": 600.0,
        "passed": False,
    }
    raw = {
        "fields": ["latency_ms", "status", "cache_requested", "cache_hit", "cache_tier", "server_took_ms"],
        "samples": [
            [10.0, 200, True, False, None, 8.0],
            [2.0, 200, True, True, "exact", 0.1],
            [40.0, 200, True, False, None, 35.0],
            [5.0, 503, True, None, None, None],
        ],
    }
    (root / "latency.json").write_text(json.dumps(summary))
    (root / "latency_raw.json").write_text(json.dumps(raw))
    ConfusionMatrix.from_pairs([("a", "a"), ("a", "b"), ("b", "b")]).save(root / "confusion.json")
    return root


def test_report_writes_markdown_json_and_plots(tmp_path: Path) -> None:
    quality = _quality_folder(tmp_path / "q")
    load = _latency_folder(tmp_path / "l")
    data = build_report([quality, load], tmp_path / "report")

    assert data["figures"] == ["metrics.png", "latency.png", "confusion-l.png"]
    for figure in data["figures"]:
        assert (tmp_path / "report" / figure).read_bytes().startswith(PNG_MAGIC)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| q | tiny | hybrid | 0.9500 | 0.8500 | 0.8000 | 0.9900 |" in md
    assert "| l | hybrid | 2 | 4 | 12.5000 | 0.2500 | 1 | 40.0000 | 600.0000 | FAIL |" in md
    assert "## Intent confusion: l" in md and "accuracy 0.667" in md
    assert json.loads((tmp_path / "report" / "report.json").read_text())["runs"][0]["quality"]["metrics"]


def test_failed_requests_stay_out_of_the_latency_distribution(tmp_path: Path) -> None:
    run = read_run_folder(_latency_folder(tmp_path / "l"))
    assert run.load_latencies == [10.0, 2.0, 40.0]


def test_a_folder_without_results_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no results\.json"):
        build_report([tmp_path / "empty"], tmp_path / "out")
