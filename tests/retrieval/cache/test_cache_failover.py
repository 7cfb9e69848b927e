"""A Redis that dies, hangs or comes back: the cache misses quickly, opens its breaker, recovers.

Each test runs its own redis-server so it can be killed or frozen without touching anyone else.
The time bounds asserted here are "does not hang" limits, twenty times the socket timeout, not
performance measurements.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from retrieval.cache.config import CacheConfig
from retrieval.cache.protocol import CacheKey
from retrieval.cache.redis_cache import RedisCache
from tests.retrieval.cache.cache_test_support import RedisServer, random_unit

pytestmark = pytest.mark.integration

_T = TypeVar("_T")
# Long enough that a healthy Redis on a busy machine always answers in time (the calls before an
# outage must succeed), short enough that the outage phases stay quick.
SOCKET_TIMEOUT_S = 0.5
NEVER_HANGS_S = 20 * SOCKET_TIMEOUT_S


def key(query: str) -> CacheKey:
    return CacheKey.for_query(query)


def config(server: RedisServer, **overrides: Any) -> CacheConfig:
    settings: dict[str, Any] = {
        "redis_url": server.url,
        "eviction_policy": "",
        "socket_timeout_s": SOCKET_TIMEOUT_S,
        "breaker_failures": 3,
        "breaker_cooldown_s": 0.3,
        "warn_interval_s": 60.0,
    }
    settings.update(overrides)
    return CacheConfig(**settings)


async def quickly(call: Callable[[], Awaitable[_T]]) -> _T:
    """Run a cache call and check it came back within the no-hang bound."""
    started = time.monotonic()
    result = await call()
    assert time.monotonic() - started < NEVER_HANGS_S
    return result


async def exercise_outage(cache: RedisCache, vector: Any) -> None:
    """Every operation keeps answering (misses, no-ops) while the backend is unusable."""
    for _ in range(10):
        exact = await quickly(lambda: cache.get_exact(key("林动的师父是谁")))
        assert not exact.is_hit
        assert exact.degraded
        semantic = await quickly(lambda: cache.get_semantic(key("林动的老师是谁"), vector, {"林动"}))
        assert not semantic.is_hit
        assert not await quickly(lambda: cache.put(key("林炎"), vector, {"林炎"}, b"x", 1.0))
    status = await quickly(cache.status)
    assert not status["available"]
    assert status["breaker"]["state"] == "open"
    metrics = cache.metrics()
    assert metrics["errors_total"] >= 3
    assert metrics["short_circuited"] > 0  # later calls never reached the dead server


async def recover(cache: RedisCache) -> None:
    """Wait out the cooldown; the half-open probe then closes the breaker."""
    await asyncio.sleep(cache.config.breaker_cooldown_s + 0.05)
    for _ in range(20):
        if not (await cache.get_exact(key("probe"))).degraded:
            return
        await asyncio.sleep(cache.config.breaker_cooldown_s)
    pytest.fail("the cache did not recover after Redis came back")


async def test_a_killed_redis_costs_misses_only_and_the_cache_recovers(private_redis: RedisServer) -> None:
    cache = RedisCache(config(private_redis))
    await cache.start()
    vector = random_unit(1)
    await cache.put(key("林动的师父是谁"), vector, {"林动"}, b"answer", 1.0)
    assert (await cache.get_exact(key("林动的师父是谁"))).is_hit

    private_redis.kill()
    await exercise_outage(cache, vector)
    assert await quickly(cache.bump_version) > 0  # kept as pending, applied once Redis is back

    private_redis.start()  # same port, empty (no persistence)
    await recover(cache)
    status = await cache.status()
    assert status["available"]
    assert status["breaker"]["state"] == "closed"
    assert status["pending_version_bumps"] == 0
    lookup = await cache.get_exact(key("林动的师父是谁"))
    assert not lookup.is_hit  # the restarted server lost everything, and nothing stale is served
    assert await cache.put(
        key("林动的师父是谁"), vector, {"林动"}, b"again", 1.0, kb_version=lookup.kb_version
    )
    assert (await cache.get_exact(key("林动的师父是谁"))).is_hit
    assert (await cache.get_semantic(key("林动的老师是谁"), vector, {"林动"})).is_hit
    await cache.close()


async def test_a_hung_redis_times_out_into_misses(private_redis: RedisServer) -> None:
    cache = RedisCache(config(private_redis))
    await cache.start()
    vector = random_unit(2)
    await cache.put(key("林动的师父是谁"), vector, {"林动"}, b"answer", 1.0)

    private_redis.pause()  # accepts connections, never answers
    try:
        await exercise_outage(cache, vector)
    finally:
        private_redis.resume()
    await recover(cache)
    # Replies that arrived late on timed-out connections must not be read as answers to new calls.
    lookup = await cache.get_exact(key("林动的师父是谁"))
    assert lookup.hit is not None
    assert lookup.hit.payload == b"answer"
    await cache.close()


async def test_a_bump_that_missed_redis_still_invalidates_every_worker(private_redis: RedisServer) -> None:
    ingester = RedisCache(config(private_redis))
    other = RedisCache(config(private_redis))
    for worker in (ingester, other):
        await worker.start()
    seen = await other.get_exact(key("林动"))
    await other.put(key("林动"), random_unit(3), {"林动"}, b"old", 1.0, kb_version=seen.kb_version)

    private_redis.pause()
    try:
        await quickly(ingester.bump_version)  # Redis unreachable: the bump stays pending
        assert (await ingester.status())["pending_version_bumps"] == 1
    finally:
        private_redis.resume()
    await recover(ingester)  # its first successful round trip applies the pending bump
    assert (await ingester.status())["pending_version_bumps"] == 0
    after = await other.get_exact(key("林动"))
    assert not after.is_hit
    assert after.kb_version > seen.kb_version
    for worker in (ingester, other):
        await worker.close()
