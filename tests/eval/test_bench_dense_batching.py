"""The dense batching benchmark runs end to end on a small random collection and reports every size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.bench import dense_batching

pytestmark = pytest.mark.integration


def test_every_batch_size_gets_wall_and_engine_figures(tmp_path: Path) -> None:
    out = tmp_path / "batching.json"
    argv = ["--random", "--rows", "3000", "--dim", "16", "--batches", "1", "4", "--calls", "4"]
    assert dense_batching.main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["rows"], report["dim"], report["vectors"]) == (3000, 16, "random unit vectors")
    assert [p["batch"] for p in report["points"]] == [1, 4]
    for point in report["points"]:
        assert point["calls"] == 4 and point["wall_ms_per_call_median"] > 0
        assert point["engine_cpu_ms_per_query"] >= 0
        assert point["wall_ms_per_query"] == pytest.approx(
            point["wall_ms_per_call_median"] / point["batch"], abs=0.01
        )
