"""The verified semantic band and the roles guard, on both backends (Redis: the real shared server)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from retrieval.cache.config import CacheConfig
from retrieval.cache.guards import GuardSignature, guard_rejection, guard_signature
from retrieval.cache.memory import MemoryCache
from retrieval.cache.protocol import Cache, CacheKey
from retrieval.cache.semantic_index import evidence_overlap
from retrieval.sparse.tokenizer import JiebaTokenizer
from tests.retrieval.cache.cache_test_support import MakeCache, at_cosine, random_unit

BAND: dict[str, Any] = {
    "semantic_threshold": 0.99,
    "verify_threshold": 0.9,
    "verify_min_overlap": 0.6,
    "verify_depth": 5,
}
CACHED_TOP = ["d1", "d2", "d3", "d4", "d5"]


class Evidence:
    """A query's sparse top-k as the search service would supply it, counting the calls."""

    def __init__(self, docs: Sequence[str]):
        self.docs = list(docs)
        self.calls: list[int] = []

    async def __call__(self, depth: int) -> Sequence[str]:
        self.calls.append(depth)
        return self.docs[:depth]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    return JiebaTokenizer(
        ["沈青崖", "顾长安", "沈伯庸"], mode="precise", cache_dir=tmp_path_factory.mktemp("jb")
    )


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, make_redis_cache: MakeCache) -> Cache:
    if request.param == "memory":
        return MemoryCache(CacheConfig(**BAND))
    return await make_redis_cache(**BAND)


def key(query: str) -> CacheKey:
    return CacheKey.for_query(query)


@pytest.mark.unit
def test_overlap_is_the_share_of_the_query_top_found_in_the_cached_top() -> None:
    assert evidence_overlap(["a", "b", "c", "d"], ["d", "c", "x", "y"], depth=4) == 0.5
    assert evidence_overlap(["a", "a", "b"], ["b", "a"], depth=2) == 1.0  # chunks of one document count once
    assert evidence_overlap(["a", "b", "c"], ["c"], depth=2) == 0.0  # only the top `depth` of each
    assert evidence_overlap([], ["a"], depth=5) == 0.0  # no evidence is no agreement


@pytest.mark.integration
async def test_a_candidate_in_the_band_is_served_when_the_evidence_agrees(cache: Cache) -> None:
    vector = random_unit(1)
    await cache.put(key("沈青崖的师父是谁"), vector, {"沈青崖"}, b"answer", 30.0, evidence=CACHED_TOP)
    agreeing = Evidence(["d2", "d1", "d9", "d3", "d5"])  # 4 of 5 in the cached top
    lookup = await cache.get_semantic(
        key("沈青崖师从何人"), at_cosine(vector, 0.95), {"沈青崖"}, evidence=agreeing
    )
    assert lookup.hit is not None
    assert (lookup.hit.tier, lookup.hit.payload) == ("semantic", b"answer")
    assert agreeing.calls == [5]  # asked once, for the configured depth


@pytest.mark.integration
async def test_a_candidate_in_the_band_is_refused_when_the_evidence_disagrees(cache: Cache) -> None:
    vector = random_unit(2)
    await cache.put(key("沈青崖的师父是谁"), vector, {"沈青崖"}, b"answer", 30.0, evidence=CACHED_TOP)
    disagreeing = Evidence(["d1", "d7", "d8", "d9", "d6"])  # 1 of 5
    lookup = await cache.get_semantic(
        key("沈青崖的徒弟是谁"), at_cosine(vector, 0.95), {"沈青崖"}, evidence=disagreeing
    )
    assert not lookup.is_hit
    assert lookup.rejection == "evidence"
    assert cache.metrics()["guard_rejections"] == {"evidence": 1}
    # Without an evidence source the band is closed; below the band nothing is considered at all.
    closed = await cache.get_semantic(key("沈青崖的徒弟是谁"), at_cosine(vector, 0.95), {"沈青崖"})
    assert not closed.is_hit and closed.rejection is None
    below = Evidence(CACHED_TOP)
    far = await cache.get_semantic(key("沈青崖在哪"), at_cosine(vector, 0.85), {"沈青崖"}, evidence=below)
    assert not far.is_hit and below.calls == []


@pytest.mark.integration
async def test_above_the_trusted_threshold_no_evidence_is_asked_for(cache: Cache) -> None:
    vector = random_unit(3)
    await cache.put(key("沈青崖的师父是谁"), vector, {"沈青崖"}, b"answer", 30.0)  # no evidence stored
    unused = Evidence([])
    lookup = await cache.get_semantic(
        key("沈青崖的师父是谁呀"), at_cosine(vector, 0.995), {"沈青崖"}, evidence=unused
    )
    assert lookup.is_hit and unused.calls == []
    # An entry without evidence can never pass the band.
    missing = Evidence(CACHED_TOP)
    refused = await cache.get_semantic(
        key("沈青崖师从何人"), at_cosine(vector, 0.95), {"沈青崖"}, evidence=missing
    )
    assert not refused.is_hit and refused.rejection == "evidence"


@pytest.mark.integration
async def test_the_guards_apply_in_the_band_before_any_evidence(
    cache: Cache, tokenizer: JiebaTokenizer
) -> None:
    vector = random_unit(4)
    cached = "沈青崖打败了顾长安"
    await cache.put(key(cached), vector, tokenizer.entities(cached), b"answer", 30.0, evidence=CACHED_TOP)
    agreeing = Evidence(CACHED_TOP)
    swapped = "顾长安打败了沈青崖"
    lookup = await cache.get_semantic(
        key(swapped), at_cosine(vector, 0.999), tokenizer.entities(swapped), evidence=agreeing
    )
    assert not lookup.is_hit
    assert lookup.rejection == "roles"
    assert agreeing.calls == []


@pytest.mark.integration
async def test_redis_evidence_reaches_other_workers_through_the_stream(make_redis_cache: MakeCache) -> None:
    writer, reader = await make_redis_cache(**BAND), await make_redis_cache(**BAND)
    vector = random_unit(5)
    await writer.put(key("沈青崖的师父是谁"), vector, {"沈青崖"}, b"from writer", 30.0, evidence=CACHED_TOP)
    agreeing = Evidence(CACHED_TOP)
    assert not (await reader.get_exact(key("沈青崖师从何人"))).is_hit  # reads the stream, as a search does
    lookup = await reader.get_semantic(
        key("沈青崖师从何人"), at_cosine(vector, 0.93), {"沈青崖"}, evidence=agreeing
    )
    assert lookup.hit is not None
    assert lookup.hit.payload == b"from writer"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("沈青崖打败了顾长安", "顾长安打败了沈青崖"),  # the same words, the roles swapped
        ("沈伯庸是被谁杀的", "沈伯庸杀了谁"),  # passive against active
        ("沈青崖把顾长安打败了", "沈青崖被顾长安打败了"),  # disposal against passive
    ],
)
def test_roles_guard_tells_who_does_what_to_whom(tokenizer: JiebaTokenizer, one: str, other: str) -> None:
    first = guard_signature(one, tokenizer.entities(one))
    second = guard_signature(other, tokenizer.entities(other))
    assert guard_rejection(first, second) == "roles"


@pytest.mark.unit
def test_roles_guard_ignores_order_with_a_single_entity_and_words_that_only_look_like_markers(
    tokenizer: JiebaTokenizer,
) -> None:
    def sig(query: str) -> GuardSignature:
        return guard_signature(query, tokenizer.entities(query))

    assert sig("沈青崖的师父是谁") == sig("谁是沈青崖的师父")
    assert guard_rejection(sig("沈青崖使用什么剑"), sig("沈青崖用什么剑")) is None  # 使用 is 'use'


@pytest.mark.unit
def test_a_doubled_negation_is_not_the_single_one(tokenizer: JiebaTokenizer) -> None:
    one, doubled = guard_signature("沈青崖不是剑客", set()), guard_signature("沈青崖不不是剑客", set())
    assert guard_rejection(one, doubled) == "negation"
