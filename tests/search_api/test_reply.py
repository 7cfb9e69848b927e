"""The spliced reply body is one well-formed `SearchResponse` with this request's own fields."""

from __future__ import annotations

import json

import msgspec
import pytest

from retrieval.answer import Answer, Explanation, Hit, encode_answer
from retrieval.service import SearchResult
from search_api.reply import splice
from search_api.schemas import SearchResponse

pytestmark = pytest.mark.unit


def _shared() -> bytes:
    hit = Hit(
        id="char-0001#0",
        doc_id="char-0001",
        title="沈青崖",
        kind="character",
        text='人称"断剑客"。',
        score=0.03,
        chunk_index=0,
        metadata={"faction": "霜刃门"},
        explanation=Explanation(dense=None, sparse=None, fused_score=0.03, rrf_k=60, weights={"dense": 1.0}),
        highlights=[],
        highlighted="人称&quot;断剑客&quot;。",
    )
    answer = Answer(
        hits=[hit], route={"intent": "character"}, degraded=False, mode="hybrid", top_k=10, offset=0
    )
    return encode_answer(answer)


def _result(payload: bytes, took_ms: float, query: str, **fields: object) -> SearchResult:
    return SearchResult(payload, query, took_ms=took_ms, **fields)  # type: ignore[arg-type]


def test_a_hit_carries_its_own_query_time_and_tier() -> None:
    body = splice(_result(_shared(), 1.23456, ' 断剑客"？', tier="semantic", timings_ms={}))
    reply = msgspec.json.decode(body, type=SearchResponse)
    assert reply.query == ' 断剑客"？'
    assert reply.took_ms == 1.235
    assert reply.cache.hit is True and reply.cache.tier == "semantic"
    assert reply.timings_ms == {}
    assert [h.doc_id for h in reply.hits] == ["char-0001"]
    assert reply.route == {"intent": "character"}


def test_a_miss_reports_no_tier_and_its_timings() -> None:
    body = splice(_result(_shared(), 12.0, "断剑客", tier=None, timings_ms={"encode_ms": 1.5}))
    reply = msgspec.json.decode(body, type=SearchResponse)
    assert reply.cache.hit is False and reply.cache.tier is None
    assert reply.timings_ms == {"encode_ms": 1.5}


def test_every_field_appears_once() -> None:
    body = splice(_result(_shared(), 1.0, "q", tier=None, timings_ms={}))
    pairs = json.loads(body, object_pairs_hook=lambda kv: kv)
    names = [k for k, _ in pairs]
    assert sorted(names) == sorted(SearchResponse.__struct_fields__)


def test_a_shared_part_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        splice(_result(b"[]", 1.0, "q", tier=None, timings_ms={}))
