"""Builds the configured cache: Redis when a URL is given, else the in-process cache."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from retrieval.cache.config import CacheConfig
from retrieval.cache.memory import MemoryCache
from retrieval.cache.protocol import Cache
from retrieval.cache.redis_cache import RedisCache

__all__ = ["CacheConfig", "build_cache"]


def build_cache(config: CacheConfig, *, registry: CollectorRegistry | None = None) -> Cache:
    """A `RedisCache` if `config.redis_url` is set, else a `MemoryCache`.

    `registry` is where the cache's Prometheus counters are registered (a private registry when
    omitted); a registry holds the counters of one cache only. Call `await cache.start()` next.
    """
    if config.redis_url:
        return RedisCache(config, registry=registry)
    return MemoryCache(config, registry=registry)
