"""The in-process cache: both tiers, guards, TTL, versions and LFU eviction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from retrieval.cache.config import CacheConfig
from retrieval.cache.factory import build_cache
from retrieval.cache.memory import MemoryCache
from retrieval.cache.protocol import Cache, CacheItem, CacheKey
from retrieval.sparse.tokenizer import JiebaTokenizer
from tests.retrieval.cache.cache_test_support import DIM, at_cosine, random_unit


class FakeClock:
    """Monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(query: str, **fields: str) -> CacheKey:
    return CacheKey.for_query(query, **fields)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> MemoryCache:
    return MemoryCache(CacheConfig(ttl_s=60, max_entries=100, semantic_threshold=0.9), clock=clock)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    cache_dir: Path = tmp_path_factory.mktemp("jieba")
    return JiebaTokenizer(["林动", "林炎", "沈青崖"], mode="precise", cache_dir=cache_dir)


@pytest.mark.unit
async def test_repeat_query_hits_the_exact_tier(cache: MemoryCache) -> None:
    first = await cache.get_exact(key("林动的师父是谁？"))
    assert not first.is_hit
    stored = await cache.put(key("林动的师父是谁？"), random_unit(1), {"林动"}, b"answer", 42.0, kb_version=0)
    assert stored
    again = await cache.get_exact(key(" 林动的师父是谁 "))
    assert again.hit is not None
    assert (again.hit.tier, again.hit.payload, again.hit.similarity, again.hit.saved_ms) == (
        "exact",
        b"answer",
        1.0,
        42.0,
    )
    m = cache.metrics()
    assert (m["exact_hits"], m["exact_misses"], m["saved_ms"]) == (1, 1, 42.0)


@pytest.mark.unit
async def test_other_filters_mode_or_route_never_hit(cache: MemoryCache) -> None:
    vector = random_unit(1)
    await cache.put(key("林动的师父是谁"), vector, {"林动"}, b"answer", 1.0)
    for other in (
        key("林动的师父是谁", filters='{"kinds":["place"]}'),
        key("林动的师父是谁", mode="sparse"),
        key("林动的师父是谁", route="timeline"),
        key("林动的师父是谁", config_version="other-model"),
    ):
        assert not (await cache.get_exact(other)).is_hit
        semantic = await cache.get_semantic(other, vector, {"林动"})
        # Structural differences are not candidates at all, so no guard is involved.
        assert not semantic.is_hit
        assert semantic.rejection is None


@pytest.mark.unit
async def test_entries_expire_after_the_ttl(cache: MemoryCache, clock: FakeClock) -> None:
    await cache.put(key("林动"), random_unit(1), {"林动"}, b"answer", 1.0)
    clock.now += 59.0
    assert (await cache.get_exact(key("林动"))).is_hit
    clock.now += 1.5
    assert not (await cache.get_exact(key("林动"))).is_hit
    assert not (await cache.get_semantic(key("林动是谁"), random_unit(1), {"林动"})).is_hit


@pytest.mark.unit
async def test_version_bump_invalidates_and_stale_puts_are_dropped(cache: MemoryCache) -> None:
    before = await cache.get_exact(key("林动"))
    await cache.put(key("林动"), random_unit(1), {"林动"}, b"old", 1.0, kb_version=before.kb_version)
    assert await cache.bump_version() == before.kb_version + 1
    assert not (await cache.get_exact(key("林动"))).is_hit
    assert not (await cache.get_semantic(key("林动"), random_unit(1), {"林动"})).is_hit
    # A search that began before the ingest must not be stored as current.
    assert not await cache.put(
        key("林动"), random_unit(1), {"林动"}, b"old", 1.0, kb_version=before.kb_version
    )
    assert cache.metrics()["dropped_puts"] == {"stale_version": 1}


@pytest.mark.unit
async def test_paraphrase_above_threshold_hits_and_below_misses(cache: MemoryCache) -> None:
    cached = random_unit(7)
    await cache.put(key("林动的师父是谁"), cached, {"林动"}, b"answer", 30.0)
    close = await cache.get_semantic(key("林动的老师是谁"), at_cosine(cached, 0.93), {"林动"})
    assert close.hit is not None
    assert close.hit.tier == "semantic"
    assert close.hit.similarity == pytest.approx(0.93, abs=1e-4)
    assert close.hit.payload == b"answer"
    assert close.hit.saved_ms == 30.0
    far = await cache.get_semantic(key("林动的老家在哪"), at_cosine(cached, 0.85), {"林动"})
    assert not far.is_hit
    assert far.rejection is None
    m = cache.metrics()
    assert (m["semantic_hits"], m["semantic_misses"], m["saved_ms"]) == (1, 1, 30.0)


@pytest.mark.unit
async def test_guards_refuse_close_vectors_and_count_the_reason(
    cache: MemoryCache, tokenizer: JiebaTokenizer
) -> None:
    cases = [
        ("林动的师父是谁", "林炎的师父是谁", "entities"),
        ("沈青崖会用剑吗", "沈青崖不会用剑吗", "negation"),
        ("第三章讲了什么", "第五章讲了什么", "numbers"),
    ]
    for seed, (cached, incoming, reason) in enumerate(cases):
        vector = random_unit(100 + seed)
        await cache.put(key(cached), vector, tokenizer.entities(cached), b"answer", 1.0)
        lookup = await cache.get_semantic(
            key(incoming), at_cosine(vector, 0.99), tokenizer.entities(incoming)
        )
        assert not lookup.is_hit
        assert lookup.rejection == reason
    assert cache.metrics()["guard_rejections"] == {"entities": 1, "negation": 1, "numbers": 1}


@pytest.mark.unit
async def test_the_best_guard_passing_candidate_wins(cache: MemoryCache) -> None:
    query = random_unit(5)
    # The closest cached vector belongs to another entity; a slightly farther one fits.
    await cache.put(key("林炎的师父"), at_cosine(query, 0.99, seed=1), {"林炎"}, b"wrong", 1.0)
    await cache.put(key("林动的老师"), at_cosine(query, 0.95, seed=2), {"林动"}, b"right", 1.0)
    lookup = await cache.get_semantic(key("林动的师父"), query, {"林动"})
    assert lookup.hit is not None
    assert lookup.hit.payload == b"right"


@pytest.mark.unit
async def test_a_put_without_vector_is_only_exact(cache: MemoryCache) -> None:
    await cache.put(key("林动", mode="sparse"), None, {"林动"}, b"bm25 only", 1.0)
    assert (await cache.get_exact(key("林动", mode="sparse"))).is_hit
    assert not (await cache.get_semantic(key("林动!", mode="sparse"), random_unit(1), {"林动"})).is_hit


@pytest.mark.unit
async def test_lfu_evicts_the_least_used_then_the_oldest(clock: FakeClock) -> None:
    cache = MemoryCache(CacheConfig(max_entries=3), clock=clock)
    for name in ("a", "b", "c"):
        await cache.put(key(name), random_unit(ord(name)), set(), name.encode(), 1.0)
        clock.now += 1
    await cache.get_exact(key("a"))
    await cache.get_exact(key("a"))
    await cache.get_semantic(key("c?"), random_unit(ord("c")), set())  # semantic hits count too
    await cache.put(key("d"), random_unit(ord("d")), set(), b"d", 1.0)  # b: fewest uses
    assert [name for name in "abcd" if (await cache.get_exact(key(name))).is_hit] == ["a", "c", "d"]
    # Now a=3, c=2, d=1 uses; e must evict d.
    await cache.put(key("e"), random_unit(ord("e")), set(), b"e", 1.0)
    assert not (await cache.get_exact(key("d"))).is_hit
    assert not (await cache.get_semantic(key("d?"), random_unit(ord("d")), set())).is_hit
    # Equal use: the oldest goes first.
    fresh = MemoryCache(CacheConfig(max_entries=2), clock=clock)
    for name in ("x", "y", "z"):
        await fresh.put(key(name), None, set(), name.encode(), 1.0)
    assert [n for n in "xyz" if (await fresh.get_exact(key(n))).is_hit] == ["y", "z"]
    assert len(fresh) == 2


@pytest.mark.unit
async def test_expired_entries_are_evicted_before_popular_live_ones(clock: FakeClock) -> None:
    cache = MemoryCache(CacheConfig(max_entries=2, ttl_s=10), clock=clock)
    await cache.put(key("popular-but-old"), None, set(), b"1", 1.0)
    for _ in range(5):
        await cache.get_exact(key("popular-but-old"))
    clock.now += 8
    await cache.put(key("young"), None, set(), b"2", 1.0)
    clock.now += 3  # the first entry has now expired
    await cache.put(key("newest"), None, set(), b"3", 1.0)
    assert (await cache.get_exact(key("young"))).is_hit
    assert (await cache.get_exact(key("newest"))).is_hit


@pytest.mark.unit
async def test_malformed_vectors_are_refused(cache: MemoryCache) -> None:
    with pytest.raises(ValueError, match="shape"):
        await cache.put(key("a"), np.zeros((2, DIM), np.float32), set(), b"x", 1.0)
    with pytest.raises(ValueError, match="non-zero"):
        await cache.get_semantic(key("a"), np.zeros(DIM, np.float32), set())
    await cache.put(key("a"), random_unit(1), set(), b"x", 1.0)
    with pytest.raises(ValueError, match="dim"):
        await cache.get_semantic(key("b"), random_unit(1, dim=DIM * 2), set())


@pytest.mark.unit
async def test_large_partitions_are_scanned_off_the_event_loop(clock: FakeClock) -> None:
    cache = MemoryCache(CacheConfig(max_entries=5000, offload_rows=100, semantic_threshold=0.95), clock=clock)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((1000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [CacheItem(key(f"q{i}"), vectors[i], frozenset(), str(i).encode()) for i in range(1000)]
    assert await cache.put_many(items) == 1000
    lookup = await cache.get_semantic(key("paraphrase of q123"), at_cosine(vectors[123], 0.97), set())
    assert lookup.hit is not None
    assert lookup.hit.payload == b"123"


@pytest.mark.unit
async def test_metrics_are_exposed_to_prometheus_without_collisions() -> None:
    registry = CollectorRegistry()
    first = MemoryCache(CacheConfig(), registry=registry)
    second = build_cache(CacheConfig())  # its own registry: two caches in one process coexist
    assert isinstance(second, MemoryCache)
    assert isinstance(second, Cache)
    await first.put(key("林动"), random_unit(1), {"林动"}, b"x", 250.0)
    await first.get_exact(key("林动"))
    await first.get_exact(key("林炎"))
    text = generate_latest(registry).decode()
    assert 'search_cache_hits_total{backend="memory",tier="exact"} 1.0' in text
    assert 'search_cache_misses_total{backend="memory",tier="exact"} 1.0' in text
    assert 'search_cache_saved_seconds_total{backend="memory"} 0.25' in text
    assert 'search_cache_state{backend="memory",name="entries"} 1.0' in text
    status = await first.status()
    assert status["backend"] == "memory"
    assert status["available"]
    assert status["entries"] == 1
    assert second.metrics()["exact_hits"] == 0
