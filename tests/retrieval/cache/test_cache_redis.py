"""The Redis cache against the real shared Redis: tiers, TTL, versions, and workers sharing it."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from retrieval.cache.config import CacheConfig
from retrieval.cache.factory import build_cache
from retrieval.cache.protocol import Cache, CacheItem, CacheKey
from retrieval.cache.redis_cache import RedisCache
from retrieval.sparse.tokenizer import JiebaTokenizer
from tests.retrieval.cache.cache_test_support import MakeCache, RedisServer, at_cosine, random_unit

pytestmark = pytest.mark.integration


def key(query: str, **fields: str) -> CacheKey:
    return CacheKey.for_query(query, **fields)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    return JiebaTokenizer(["林动", "林炎", "沈青崖"], mode="precise", cache_dir=tmp_path_factory.mktemp("jb"))


async def test_repeat_query_hits_the_exact_tier(make_redis_cache: MakeCache) -> None:
    cache = await make_redis_cache()
    miss = await cache.get_exact(key("林动的师父是谁？"))
    assert not miss.is_hit
    assert not miss.degraded
    stored = await cache.put(
        key("林动的师父是谁？"), random_unit(1), {"林动"}, b"answer", 12.5, kb_version=miss.kb_version
    )
    assert stored
    hit = await cache.get_exact(key("林动的师父是谁"))
    assert hit.hit is not None
    assert (hit.hit.tier, hit.hit.payload, hit.hit.saved_ms) == ("exact", b"answer", 12.5)
    metrics = cache.metrics()
    assert (metrics["exact_hits"], metrics["exact_misses"], metrics["saved_ms"]) == (1, 1, 12.5)


async def test_entries_expire_after_the_ttl(
    make_redis_cache: MakeCache, shared_redis: aioredis.Redis
) -> None:
    cache = await make_redis_cache(ttl_s=1.0)
    vector = random_unit(2)
    await cache.put(key("林动"), vector, {"林动"}, b"answer", 1.0)
    assert (await cache.get_exact(key("林动"))).is_hit
    assert (await cache.get_semantic(key("林动是谁"), at_cosine(vector, 0.99), {"林动"})).is_hit
    await asyncio.sleep(1.2)
    assert not (await cache.get_exact(key("林动"))).is_hit
    assert not (await cache.get_semantic(key("林动是谁"), at_cosine(vector, 0.99), {"林动"})).is_hit
    assert await shared_redis.exists(f"{cache.config.key_prefix}e:{key('林动').digest}") == 0


async def test_paraphrase_above_threshold_hits_and_below_misses(make_redis_cache: MakeCache) -> None:
    cache = await make_redis_cache(semantic_threshold=0.9)
    cached = random_unit(3)
    await cache.put(key("林动的师父是谁"), cached, {"林动"}, b"answer", 40.0)
    close = await cache.get_semantic(key("林动的老师是谁"), at_cosine(cached, 0.92), {"林动"})
    assert close.hit is not None
    assert close.hit.tier == "semantic"
    assert close.hit.similarity == pytest.approx(0.92, abs=1e-4)
    assert close.hit.payload == b"answer"
    far = await cache.get_semantic(key("林动的老家在哪"), at_cosine(cached, 0.88), {"林动"})
    assert not far.is_hit
    other_route = await cache.get_semantic(key("林动的老师是谁", route="timeline"), cached, {"林动"})
    assert not other_route.is_hit
    assert cache.metrics()["semantic_hits"] == 1


async def test_guards_refuse_close_vectors_and_count_the_reason(
    make_redis_cache: MakeCache, tokenizer: JiebaTokenizer
) -> None:
    cache = await make_redis_cache()
    cases = [
        ("林动的师父是谁", "林炎的师父是谁", "entities"),
        ("沈青崖会用剑吗", "沈青崖不会用剑吗", "negation"),
        ("第三章讲了什么", "第五章讲了什么", "numbers"),
    ]
    for seed, (cached, incoming, reason) in enumerate(cases):
        vector = random_unit(10 + seed)
        await cache.put(key(cached), vector, tokenizer.entities(cached), b"answer", 1.0)
        lookup = await cache.get_semantic(
            key(incoming), at_cosine(vector, 0.99), tokenizer.entities(incoming)
        )
        assert not lookup.is_hit
        assert lookup.rejection == reason
    assert cache.metrics()["guard_rejections"] == {"entities": 1, "negation": 1, "numbers": 1}


async def test_version_bump_invalidates_and_late_puts_are_never_served(make_redis_cache: MakeCache) -> None:
    cache = await make_redis_cache()
    vector = random_unit(4)
    before = await cache.get_exact(key("林动"))
    await cache.put(key("林动"), vector, {"林动"}, b"v1", 1.0, kb_version=before.kb_version)
    assert (await cache.get_exact(key("林动"))).is_hit
    new_version = await cache.bump_version()
    assert new_version == before.kb_version + 1
    after = await cache.get_exact(key("林动"))
    assert not after.is_hit
    assert after.kb_version == new_version
    assert not (await cache.get_semantic(key("林动?!"), vector, {"林动"})).is_hit
    # A response computed before the ingest is dropped, not stored as current.
    assert not await cache.put(key("林动"), vector, {"林动"}, b"v1", 1.0, kb_version=before.kb_version)
    assert await cache.put(key("林动"), vector, {"林动"}, b"v2", 1.0, kb_version=after.kb_version)
    lookup = await cache.get_exact(key("林动"))
    assert lookup.hit is not None
    assert lookup.hit.payload == b"v2"


async def test_two_workers_share_entries_and_versions(make_redis_cache: MakeCache) -> None:
    worker_a, worker_b = await make_redis_cache(), await make_redis_cache()
    vector = random_unit(5)
    seen = await worker_a.get_exact(key("林动的师父是谁"))
    await worker_a.put(key("林动的师父是谁"), vector, {"林动"}, b"from a", 9.0, kb_version=seen.kb_version)

    exact = await worker_b.get_exact(key("林动的师父是谁"))
    assert exact.hit is not None
    assert exact.hit.payload == b"from a"
    # B learned about A's vector from the stream during that lookup.
    semantic = await worker_b.get_semantic(key("林动的老师是谁"), at_cosine(vector, 0.97), {"林动"})
    assert semantic.hit is not None
    assert semantic.hit.payload == b"from a"

    # An ingest handled by B invalidates what A serves, on A's very next lookup.
    version = await worker_b.bump_version()
    after = await worker_a.get_exact(key("林动的师父是谁"))
    assert not after.is_hit
    assert after.kb_version == version
    assert not (await worker_a.get_semantic(key("林动的老师是谁"), vector, {"林动"})).is_hit


async def test_a_late_worker_replays_the_stream_at_start(make_redis_cache: MakeCache) -> None:
    early = await make_redis_cache()
    vectors = [random_unit(100 + i) for i in range(20)]
    for i, vector in enumerate(vectors):
        await early.put(key(f"问题{i}"), vector, set(), f"a{i}".encode(), 1.0)
    late = await make_redis_cache()
    assert (await late.status())["semantic_entries"] == 20
    lookup = await late.get_semantic(key("问题十七的说法"), at_cosine(vectors[17], 0.98), set())
    assert lookup.hit is not None
    assert lookup.hit.payload == b"a17"


async def test_entries_evicted_in_redis_leave_the_matrix(
    make_redis_cache: MakeCache, shared_redis: aioredis.Redis
) -> None:
    cache = await make_redis_cache()
    vector = random_unit(6)
    await cache.put(key("林动"), vector, {"林动"}, b"answer", 1.0)
    await shared_redis.delete(f"{cache.config.key_prefix}e:{key('林动').digest}")  # as LFU eviction would
    assert not (await cache.get_semantic(key("林动是谁"), vector, {"林动"})).is_hit
    assert (await cache.status())["semantic_entries"] == 0


async def test_a_lost_version_key_never_revives_old_entries(
    make_redis_cache: MakeCache, shared_redis: aioredis.Redis
) -> None:
    cache = await make_redis_cache()
    first = await cache.get_exact(key("林动"))
    await cache.put(key("林动"), random_unit(7), {"林动"}, b"old", 1.0, kb_version=first.kb_version)
    await shared_redis.delete(f"{cache.config.key_prefix}kb_version")  # evicted, or Redis restarted
    again = await cache.get_exact(key("林动"))
    assert not again.is_hit
    assert again.kb_version > first.kb_version


async def test_status_and_factory(make_redis_cache: MakeCache, key_prefix: str) -> None:
    cache = await make_redis_cache()
    status = await cache.status()
    assert status["backend"] == "redis"
    assert status["available"]
    assert status["breaker"]["state"] == "closed"
    assert status["eviction_policy"] == {"requested": None, "applied": False, "error": None}
    built = build_cache(CacheConfig(redis_url="redis://127.0.0.1:6379/0", key_prefix=key_prefix))
    assert isinstance(built, RedisCache)
    assert isinstance(built, Cache)
    await built.close()


async def test_eviction_policy_is_requested_and_a_refusal_is_reported(
    private_redis: RedisServer, locked_down_redis: RedisServer
) -> None:
    for server, applied in ((private_redis, True), (locked_down_redis, False)):
        cache = RedisCache(
            CacheConfig(redis_url=server.url, eviction_policy="allkeys-lfu", socket_timeout_s=0.5)
        )
        await cache.start()
        status = await cache.status()
        assert status["eviction_policy"]["applied"] is applied
        # Refused or not, the cache keeps working.
        await cache.put(key("林动"), random_unit(8), {"林动"}, b"answer", 1.0)
        assert (await cache.get_exact(key("林动"))).is_hit
        await cache.close()
    assert "refused" in status["eviction_policy"]["error"]
    client = aioredis.Redis.from_url(private_redis.url)
    assert (await client.config_get("maxmemory-policy"))["maxmemory-policy"] == "allkeys-lfu"
    await client.aclose()


async def test_a_worker_far_behind_catches_up_in_the_background(make_redis_cache: MakeCache) -> None:
    behind = await make_redis_cache(sync_batch=50)
    writer = await make_redis_cache()
    vectors = [random_unit(1000 + i) for i in range(400)]
    items = [CacheItem(key(f"条目{i}"), vectors[i], frozenset(), str(i).encode()) for i in range(400)]
    assert await writer.put_many(items) == 400
    # One lookup reads a small batch, sees it is a full one and hands the rest to a background task.
    await behind.get_exact(key("条目0"))
    for _ in range(100):
        if (await behind.status())["semantic_entries"] == 400:
            break
        await asyncio.sleep(0.05)
    assert (await behind.status())["semantic_entries"] == 400
    lookup = await behind.get_semantic(key("条目三百九十九的说法"), at_cosine(vectors[399], 0.97), set())
    assert lookup.hit is not None
    assert lookup.hit.payload == b"399"
