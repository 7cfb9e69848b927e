"""Cache fixtures: the shared Redis with a private key prefix per test, and private Redis servers.

Tests never FLUSHDB the shared server: every key a test writes lives under its own prefix and is
deleted afterwards, so these tests can run alongside anyone else's.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from retrieval.cache.config import CacheConfig
from retrieval.cache.redis_cache import RedisCache
from tests.retrieval.cache.cache_test_support import SHARED_REDIS_URL, MakeCache, RedisServer, delete_prefix


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"test:cache:{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_prefix(SHARED_REDIS_URL, prefix)


@pytest.fixture
async def shared_redis() -> AsyncIterator[aioredis.Redis]:
    """A plain client of the shared Redis, to inspect or tamper with keys directly."""
    client = aioredis.Redis.from_url(SHARED_REDIS_URL)
    try:
        await client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the shared Redis at {SHARED_REDIS_URL} is not reachable: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def make_redis_cache(key_prefix: str, shared_redis: aioredis.Redis) -> AsyncIterator[MakeCache]:
    """Builds started `RedisCache`s ("workers") on the shared Redis under the test's prefix.

    The shared server's eviction policy is left alone unless a test asks otherwise.
    """
    caches: list[RedisCache] = []

    async def make(**overrides: Any) -> RedisCache:
        settings: dict[str, Any] = {
            "redis_url": SHARED_REDIS_URL,
            "key_prefix": key_prefix,
            "eviction_policy": "",
            "socket_timeout_s": 0.5,
            # The tests' near-duplicate vectors sit at about 0.95; the served default is stricter.
            "semantic_threshold": 0.95,
        }
        settings.update(overrides)
        cache = RedisCache(CacheConfig(**settings))
        await cache.start()
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A started redis-server of the test's own, killed afterwards."""
    server = RedisServer()
    server.start()
    yield server
    server.resume()
    server.kill()


@pytest.fixture
def locked_down_redis() -> Iterator[RedisServer]:
    """A private redis-server with CONFIG disabled, as managed Redis services often have it."""
    server = RedisServer(("--rename-command", "CONFIG", ""))
    server.start()
    yield server
    server.kill()
