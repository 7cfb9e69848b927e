"""The semantic tier at 50k cached queries of dimension 512, shared through Redis.

Runs on a private redis-server: the fill writes about 100 MB of vectors, which has no business on
a server other tests share. Lookup latency is measured by `eval/bench/cache_lookup.py`, not here.
"""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.cache.config import CacheConfig
from retrieval.cache.protocol import CacheItem, CacheKey
from retrieval.cache.redis_cache import RedisCache
from tests.retrieval.cache.cache_test_support import RedisServer, at_cosine

ENTRIES = 50_000
DIM = 512


@pytest.mark.integration
@pytest.mark.slow
async def test_a_new_worker_replays_50k_vectors_and_finds_paraphrases(private_redis: RedisServer) -> None:
    settings = CacheConfig(
        redis_url=private_redis.url,
        eviction_policy="",
        max_entries=60_000,
        socket_timeout_s=1.0,
        semantic_threshold=0.95,
    )
    rng = np.random.default_rng(50)
    vectors = rng.standard_normal((ENTRIES, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    writer = RedisCache(settings)
    await writer.start()
    items = (
        CacheItem(CacheKey(f"问题{i}"), vectors[i], frozenset(), str(i).encode(), 50.0)
        for i in range(ENTRIES)
    )
    assert await writer.put_many(items) == ENTRIES

    reader = RedisCache(settings)
    await reader.start()
    assert (await reader.status())["semantic_entries"] == ENTRIES
    for i in rng.choice(ENTRIES, size=20, replace=False):
        assert (await reader.get_exact(CacheKey(f"问题{i}"))).is_hit
        lookup = await reader.get_semantic(
            CacheKey(f"问题{i}的另一种问法"), at_cosine(vectors[i], 0.97), set()
        )
        assert lookup.hit is not None
        assert lookup.hit.payload == str(i).encode()
    stranger = rng.standard_normal(DIM).astype(np.float32)
    assert not (await reader.get_semantic(CacheKey("无关的问题"), stranger, set())).is_hit
    for worker in (writer, reader):
        await worker.close()
