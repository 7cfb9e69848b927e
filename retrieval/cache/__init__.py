"""Query cache: exact and semantic tiers, in process or shared through Redis."""

from __future__ import annotations

from retrieval.cache.config import CacheConfig
from retrieval.cache.factory import build_cache
from retrieval.cache.guards import GuardSignature, guard_rejection, guard_signature
from retrieval.cache.memory import MemoryCache
from retrieval.cache.protocol import (
    Cache,
    CacheHit,
    CacheItem,
    CacheKey,
    CacheLookup,
    GuardReason,
    Tier,
    filters_key,
    normalise_query,
)
from retrieval.cache.redis_cache import RedisCache

__all__ = [
    "Cache",
    "CacheConfig",
    "CacheHit",
    "CacheItem",
    "CacheKey",
    "CacheLookup",
    "GuardReason",
    "GuardSignature",
    "MemoryCache",
    "RedisCache",
    "Tier",
    "build_cache",
    "filters_key",
    "guard_rejection",
    "guard_signature",
    "normalise_query",
]
