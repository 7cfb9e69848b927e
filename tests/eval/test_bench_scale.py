"""Pieces of the scale benchmark that decide what its figures mean."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from eval.bench.scale import BlendedPassages, plot, recall_at_10, turn, write_markdown
from tests.conftest import HashingEncoder

pytestmark = pytest.mark.unit


def test_recall_at_10_counts_the_exact_top_10_found() -> None:
    exact = [[str(i) for i in range(10)], [str(i) for i in range(10, 20)]]
    approx = [[str(i) for i in range(10)], [str(i) for i in range(15, 25)]]
    # First query: all 10 found; second: 15..19 found, 5 of 10.
    assert recall_at_10(approx, exact) == 0.75
    assert recall_at_10([], []) == 0.0


def test_blended_passages_are_real_first_then_unit_blends_near_real_ones(tmp_path: Path) -> None:
    real = HashingEncoder(dim=64)
    texts = [f"第{i}章 沈青崖在栖岚山练剑，第{i * 7}次。" for i in range(40)]
    blended = BlendedPassages(real, base=25, cache=tmp_path / "base.npy")
    first = asyncio.run(blended.encode_passages(texts[:30]))
    expected = asyncio.run(real.encode_passages(texts[:25]))
    np.testing.assert_allclose(first[:25], expected, rtol=1e-6)
    later = asyncio.run(blended.encode_passages(texts[30:]))
    vectors = np.vstack([first[25:], later])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    nearest = (vectors @ expected.T).max(axis=1)
    # A blend leans towards one real passage (weight >= 0.55) without being a copy of it.
    assert (nearest > 0.6).all() and (nearest < 0.9999).all()
    # The real vectors are kept: a second run continues with blends, encoding nothing more.
    again = BlendedPassages(real, base=25, cache=tmp_path / "base.npy")
    np.testing.assert_allclose(again.base, expected, rtol=1e-6)


def _point(size: int, index: str, p95: float) -> dict[str, object]:
    stage = {"p50_ms": p95 / 2, "p95_ms": p95, "p99_ms": p95 * 1.2, "n": 200}
    names = ("encode", "dense", "sparse", "pipeline_hybrid", "pipeline_dense")
    point: dict[str, object] = {
        "size": size,
        "index": index,
        "chunks": size + 451,
        "stages": {name: stage for name in names},
        "http": {"p50_ms": p95 / 2, "p95_ms": p95 * 3, "p99_ms": p95 * 4, "qps": 50.0},
        "lite_rss_mb": 100.0,
        "disk_mb": 10.0,
    }
    if index == "IVF_FLAT":
        point["recall_at_10_vs_flat"] = 0.987
    return point


def test_report_table_and_curve(tmp_path: Path) -> None:
    report = {
        "concurrency": 8,
        "runs": 3,
        "duration_s": 20.0,
        "raw_queries": 200,
        "points": [
            _point(10_000, "FLAT", 20.0),
            _point(10_000, "IVF_FLAT", 8.0),
            _point(50_000, "FLAT", 60.0),
        ],
    }
    write_markdown(report, tmp_path / "scale.md")
    rows = [line for line in (tmp_path / "scale.md").read_text().splitlines() if line[2:3].isdigit()]
    assert rows[0].startswith("| 10,451 | FLAT | 10 / 60 ms | 50 |") and "| exact |" in rows[0]
    assert rows[1].startswith("| 10,451 | IVF_FLAT |") and "| 0.987 |" in rows[1]
    assert rows[2].startswith("| 50,451 | FLAT |")
    plot(report, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_turn_is_exclusive_and_reentrant(tmp_path: Path) -> None:
    lock = tmp_path / "bench.lock"

    def other_process_gets_it() -> bool:
        return subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0

    with turn(lock):
        with turn(lock):  # a nested step must not wait for its own outer hold
            assert not other_process_gets_it()
        assert not other_process_gets_it()
    assert other_process_gets_it()
