"""Weighted RRF against hand-computed values."""

from __future__ import annotations

import pytest

from retrieval.fusion import WeightedRRF
from retrieval.types import StoredHit


def _hits(*ids: str) -> list[StoredHit]:
    return [StoredHit(id=i, score=1.0 / (n + 1)) for n, i in enumerate(ids)]


@pytest.mark.unit
def test_rrf_scores_by_hand() -> None:
    fused = WeightedRRF(k=60).fuse({"dense": _hits("a", "b", "c"), "sparse": _hits("c", "a", "d")})
    scores = {h.hit.id: h.score for h in fused}
    # a: 1/61 + 1/62; c: 1/63 + 1/61; b: 1/62; d: 1/63
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62, abs=1e-15)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61, abs=1e-15)
    assert scores["b"] == pytest.approx(1 / 62, abs=1e-15)
    assert scores["d"] == pytest.approx(1 / 63, abs=1e-15)
    assert [h.hit.id for h in fused] == ["a", "c", "b", "d"]
    a = fused[0]
    assert a.sources["dense"].rank == 1 and a.sources["sparse"].rank == 2
    assert a.sources["dense"].contribution == pytest.approx(1 / 61)
    assert a.sources["sparse"].contribution == pytest.approx(1 / 62)


@pytest.mark.unit
def test_weights_and_k_change_the_order() -> None:
    lists = {"dense": _hits("x", "y"), "sparse": _hits("y", "x")}
    heavy_sparse = WeightedRRF(k=10, weights={"dense": 1.0, "sparse": 3.0}).fuse(lists)
    # y: 1/12 + 3/11 = 0.3561; x: 1/11 + 3/12 = 0.3409
    assert [h.hit.id for h in heavy_sparse] == ["y", "x"]
    assert heavy_sparse[0].score == pytest.approx(1 / 12 + 3 / 11)
    overridden = WeightedRRF(k=10).fuse(lists, weights={"dense": 3.0, "sparse": 1.0})
    assert [h.hit.id for h in overridden] == ["x", "y"]
    assert overridden[0].score == pytest.approx(3 / 11 + 1 / 12)


@pytest.mark.unit
def test_ties_break_by_best_rank_then_id_and_duplicates_count_once() -> None:
    fused = WeightedRRF(k=0).fuse({"dense": _hits("b", "a"), "sparse": _hits("a", "b", "a")})
    # a: 1/2 + 1/1, b: 1/1 + 1/2: equal; both best rank 1 -> by id.
    assert [h.hit.id for h in fused] == ["a", "b"]
    assert fused[0].score == pytest.approx(1.5)


@pytest.mark.unit
def test_rejects_negative_parameters() -> None:
    with pytest.raises(ValueError, match="k must be"):
        WeightedRRF(k=-1)
    with pytest.raises(ValueError, match="weights must be"):
        WeightedRRF(weights={"dense": -1.0})
