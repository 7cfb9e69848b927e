"""Metrics against values worked out by hand, the TREC writer, percentiles and ranx.compare."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from eval.bench.stats import latency_summary, percentile
from eval.metrics import compare_runs, evaluate_run, first_per_document, markdown_table, read_trec, write_trec

pytestmark = pytest.mark.unit

QRELS = {
    "q1": {"d1": 2, "d2": 1},  # graded: d1 is the better answer
    "q2": {"d3": 1},
    "q3": {"d4": 1},
    "q4": {"d5": 0},  # judged, nothing relevant: not evaluated
}
RUN = {
    # q1: a miss, then d2 (rel 1) at rank 2, then d1 (rel 2) at rank 3.
    "q1": [("d9", 0.9), ("d2", 0.8), ("d1", 0.7)],
    # q2: d3 only at rank 12.
    "q2": [(f"x{i}", 1.0 - i / 100) for i in range(11)] + [("d3", 0.5)],
    # q3: nothing returned at all.
    "q4": [("d5", 1.0)],
}


def test_recall_ndcg_mrr_match_hand_computation() -> None:
    # q1 by hand: Recall@10 = 2/2; MRR@10 = 1/2 (first relevant at rank 2);
    # DCG@10 = 1/log2(2+1) + 2/log2(3+1); ideal order d1, d2: IDCG = 2/log2(2) + 1/log2(3).
    q1_ndcg = (1 / math.log2(3) + 2 / math.log2(4)) / (2 / math.log2(2) + 1 / math.log2(3))
    # q2: relevant only at rank 12 -> 0 at cut-off 10, found within 100. q3: nothing.
    expected = {
        "recall@10": (1 + 0 + 0) / 3,
        "ndcg@10": (q1_ndcg + 0 + 0) / 3,
        "mrr@10": (0.5 + 0 + 0) / 3,
        "recall@100": (1 + 1 + 0) / 3,
    }
    result = evaluate_run(QRELS, RUN)
    assert result.mean == pytest.approx(expected)
    assert result.per_query["ndcg@10"] == pytest.approx({"q1": q1_ndcg, "q2": 0.0, "q3": 0.0})
    assert result.per_query["recall@100"] == pytest.approx({"q1": 1.0, "q2": 1.0, "q3": 0.0})
    assert q1_ndcg == pytest.approx(0.6199, abs=1e-4)


def test_engine_order_wins_over_tied_scores() -> None:
    # Fused RRF scores tie; the engine's order (list order) is what must be measured.
    qrels = {"q": {"a": 1}}
    first = evaluate_run(qrels, {"q": [("a", 0.5), ("b", 0.5)]}, ["mrr@10"])
    second = evaluate_run(qrels, {"q": [("b", 0.5), ("a", 0.5)]}, ["mrr@10"])
    assert (first.mean["mrr@10"], second.mean["mrr@10"]) == (1.0, 0.5)


def test_run_with_no_results_scores_zero() -> None:
    assert evaluate_run(QRELS, {}).mean == dict.fromkeys(
        ("recall@10", "ndcg@10", "mrr@10", "recall@100"), 0.0
    )


def test_nothing_judged_relevant_is_an_error() -> None:
    with pytest.raises(ValueError, match="no query has a relevant document"):
        evaluate_run({"q": {"d": 0}}, {"q": [("d", 1.0)]})


def test_group_means_average_per_query_scores() -> None:
    result = evaluate_run(QRELS, RUN)
    groups = result.group_means({"a": ["q1", "q2"], "b": ["q3"], "unjudged": ["q4"]})
    assert groups["a"]["recall@100"] == pytest.approx(1.0)
    assert groups["b"]["recall@100"] == 0.0
    assert "unjudged" not in groups


def test_chunk_hits_collapse_to_first_rank_per_document() -> None:
    hits = [("d1", 0.9), ("d2", 0.8), ("d1", 0.7), ("d3", 0.6), ("d2", 0.5)]
    assert first_per_document(hits) == [("d1", 0.9), ("d2", 0.8), ("d3", 0.6)]


def test_trec_file_format_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "hybrid.trec"
    write_trec(path, {"q1": [("d2", 0.5), ("d1", 0.5), ("d2", 0.1), ("d7", 0.25)]}, tag="hybrid", depth=2)
    assert path.read_text().splitlines() == [
        "q1 Q0 d2 1 0.500000 hybrid",
        "q1 Q0 d1 2 0.500000 hybrid",
    ]
    assert read_trec(path) == {"q1": [("d2", 0.5), ("d1", 0.5)]}


def test_trec_rejects_whitespace_in_ids_and_tags(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        write_trec(tmp_path / "r.trec", {"q1": [("doc 3", 1.0)]}, tag="t")
    with pytest.raises(ValueError, match="one word"):
        write_trec(tmp_path / "r.trec", {"q1": [("d", 1.0)]}, tag="two words")


def test_percentiles_match_numpy() -> None:
    values = [float(v) for v in np.random.default_rng(7).lognormal(3, 0.5, 501)]
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    summary = latency_summary([10.0, 20.0, 30.0, 40.0])
    assert summary["count"] == 4 and summary["p50_ms"] == 25.0 and summary["max_ms"] == 40.0
    assert latency_summary([]) == {"count": 0}


def test_compare_reports_significance_between_runs() -> None:
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(30)}
    good = {f"q{i}": [(f"d{i}", 1.0)] for i in range(30)}
    # Mostly third, sometimes first: a clear but not constant difference (a t-test needs variance).
    bad = {
        f"q{i}": [(f"d{i}", 1.0)] if i % 5 == 0 else [("x", 1.0), ("y", 0.9), (f"d{i}", 0.5)]
        for i in range(30)
    }
    comparison = compare_runs(qrels, {"good": good, "bad": bad}, ["mrr@10"])
    assert "good" in comparison.table and "bad" in comparison.table
    assert comparison.data["good"]["scores"]["mrr@10"] == 1.0
    p_value = comparison.data["good"]["comparisons"]["bad"]["mrr@10"]
    assert p_value is not None and p_value < 0.05
    with pytest.raises(ValueError, match="at least two"):
        compare_runs(qrels, {"good": good}, ["mrr@10"])


def test_markdown_table() -> None:
    table = markdown_table(["mode", "nDCG@10"], [["a|b", 0.12345], ["c", float("nan")]])
    assert table.splitlines() == ["| mode | nDCG@10 |", "| --- | --- |", "| a\\|b | 0.1235 |", "| c | nan |"]
