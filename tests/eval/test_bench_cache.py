"""The cache benchmark's stream and its harm measure (the figures themselves come from the bench)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from eval.bench.cache_http import is_harmful, ndcg_at
from eval.bench.cache_stream import StreamItem, _plain, build_stream, read_judgements, read_queries

pytestmark = pytest.mark.unit


def test_ndcg_matches_a_hand_computed_value() -> None:
    judgements = {"a": 3, "b": 1}
    # served b, x, a: dcg = 1/log2(2) + 3/log2(4); ideal = 3/log2(2) + 1/log2(3)
    expected = (1 + 3 / 2) / (3 + 1 / math.log2(3))
    assert ndcg_at(["b", "x", "a"], judgements) == pytest.approx(expected)
    assert ndcg_at(["a", "a", "b"], judgements) == pytest.approx(1.0)  # a document counts once
    assert ndcg_at(["x"], {}) == 0.0


def test_harm_is_a_drop_beyond_the_margin_or_a_lost_first_hit() -> None:
    judgements = {"a": 3, "b": 2, "c": 1}
    assert not is_harmful(["a", "b", "c"], ["a", "c", "b"], judgements)  # a small reorder below the top
    assert is_harmful(["x", "y", "a"], ["a", "b", "c"], judgements)  # nDCG far lower
    assert is_harmful(["x", "a", "b", "c"], ["a", "x", "b", "c"], {"a": 1, "b": 3, "c": 3})  # first hit lost
    assert not is_harmful(["a", "x"], ["x", "a"], judgements)  # better than uncached is no harm


@pytest.fixture(scope="module")
def stream() -> list[StreamItem]:
    return build_stream(2000, seed=1)


def test_stream_has_every_kind_and_is_reproducible(stream: list[StreamItem]) -> None:
    kinds = Counter(item.kind for item in stream)
    assert len(stream) == 2000
    assert {
        "original",
        "repeat",
        "surface",
        "paraphrase",
        "near_entity",
        "near_negation",
        "near_number",
    } <= set(kinds)
    assert build_stream(200, seed=1) == stream[:200]
    assert build_stream(200, seed=2) != stream[:200]


def test_variants_are_new_and_near_misses_unique_and_unjudged(stream: list[StreamItem]) -> None:
    judged_ids = set(read_judgements())
    wordings = {_plain(q.text) for q in read_queries()}
    seen: set[str] = set()
    near: list[str] = []
    for item in stream:
        if item.kind in ("surface", "paraphrase"):
            assert item.text not in seen
            assert item.qid in judged_ids
        if item.kind.startswith("near_"):
            assert item.qid is None
            assert _plain(item.text) not in wordings
            near.append(_plain(item.text))
        seen.add(item.text)
    assert len(near) == len(set(near))
