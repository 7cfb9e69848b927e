"""The query cache through `/v1/search`, on the real Redis: hits, bypass, invalidation, guards, outage."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from search_api.app import create_app
from search_api.settings import ApiSettings
from tests.conftest import HashingEncoder
from tests.retrieval.cache.cache_test_support import SHARED_REDIS_URL, RedisServer, delete_prefix
from tests.search_api.conftest import ADMIN_KEY

pytestmark = pytest.mark.integration


def _with_redis(settings: ApiSettings, url: str, prefix: str, threshold: float = 0.9) -> ApiSettings:
    cache = dataclasses.replace(
        settings.engine.cache,
        redis_url=url,
        key_prefix=prefix,
        semantic_threshold=threshold,
        socket_timeout_s=0.2,
    )
    return dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, cache=cache))


async def _started(settings: ApiSettings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(settings, encoder=HashingEncoder())
    async with AsyncTestClient(app=app) as client:
        for _ in range(400):
            if (await client.get("/v1/ready")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        yield client


@pytest.fixture
async def redis_client(api_settings: ApiSettings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    prefix = f"test:api:{uuid.uuid4().hex[:10]}:"
    async for client in _started(_with_redis(api_settings, SHARED_REDIS_URL, prefix)):
        yield client
    delete_prefix(SHARED_REDIS_URL, prefix)


async def _search(client: AsyncTestClient, query: str, **extra: object) -> dict[str, object]:  # type: ignore[type-arg]
    response = await client.post("/v1/search", json={"query": query, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_repeat_hits_exact_tier_and_cache_false_bypasses(redis_client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    first = await _search(redis_client, "断剑客是谁？")
    assert first["cache"] == {"hit": False, "tier": None}
    await asyncio.sleep(0.1)  # the reply is stored off the request path
    again = await _search(redis_client, " 断剑客是谁 ")  # same question after normalisation
    assert again["cache"] == {"hit": True, "tier": "exact"}
    assert again["hits"] == first["hits"]
    bypass = await _search(redis_client, "断剑客是谁？", cache=False)
    assert bypass["cache"] == {"hit": False, "tier": None}
    other_page = await _search(redis_client, "断剑客是谁？", top_k=1)
    assert other_page["cache"]["hit"] is False  # type: ignore[index]
    ready = (await redis_client.get("/v1/ready")).json()
    assert ready["cache"]["backend"] == "redis" and ready["cache"]["metrics"]["exact_hits"] >= 1
    metrics = (await redis_client.get("/metrics")).text
    assert "search_cache_" in metrics


async def test_no_hit_across_an_ingest(redis_client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    await _search(redis_client, "玄霜城")
    await asyncio.sleep(0.1)
    assert (await _search(redis_client, "玄霜城"))["cache"]["hit"] is True  # type: ignore[index]
    doc = {"id": "loc-2", "title": "玄霜城外", "kind": "location", "text": "玄霜城外是一片雪原。"}
    written = await redis_client.post(
        "/v1/documents", json={"documents": [doc]}, headers={"X-API-Key": ADMIN_KEY}
    )
    assert written.status_code == 200
    after = await _search(redis_client, "玄霜城")
    assert after["cache"]["hit"] is False  # type: ignore[index]
    assert "loc-2" in {h["doc_id"] for h in after["hits"]}  # type: ignore[attr-defined]


async def test_semantic_tier_and_guards(api_settings: ApiSettings) -> None:
    prefix = f"test:api:{uuid.uuid4().hex[:10]}:"
    # The test encoder embeds a bag of characters: a reordering is the same vector, and a swapped
    # three-character name in a long shared context stays well above this threshold.
    settings = _with_redis(api_settings, SHARED_REDIS_URL, prefix, threshold=0.8)
    context = "在整个北境江湖之中大家都在传说的那位用剑的高手到底是"
    try:
        async for client in _started(settings):
            await _search(client, f"请问{context}沈青崖吗")
            await asyncio.sleep(0.1)
            # The wrapper moved to the end: searched as the same text, so the exact tier serves it.
            rewrapped = await _search(client, f"{context}沈青崖吗请问")
            assert rewrapped["cache"] == {"hit": True, "tier": "exact"}
            # Without its 的 the text differs, the canonical form does not.
            dropped = await _search(client, f"请问{context.replace('的', '')}沈青崖吗")
            assert dropped["cache"] == {"hit": True, "tier": "canonical"}
            # The words reordered: another canonical form, the same bag of characters.
            paraphrase = await _search(client, f"沈青崖{context}吗")
            assert paraphrase["cache"] == {"hit": True, "tier": "semantic"}
            swapped = await _search(client, f"请问{context}玄霜城吗")
            assert swapped["cache"]["hit"] is False  # type: ignore[index]
            negated = await _search(client, f"请问{context[:-1]}不是沈青崖吗")
            assert negated["cache"]["hit"] is False  # type: ignore[index]
            rejections = (await client.get("/v1/ready")).json()["cache"]["metrics"]["guard_rejections"]
            assert rejections.get("entities", 0) >= 1 and rejections.get("negation", 0) >= 1, rejections
    finally:
        delete_prefix(SHARED_REDIS_URL, prefix)


async def test_searches_keep_answering_when_redis_dies(api_settings: ApiSettings) -> None:
    server = RedisServer()
    server.start()
    try:
        async for client in _started(_with_redis(api_settings, server.url, "test:outage:")):
            await _search(client, "听雪剑")
            await asyncio.sleep(0.1)
            assert (await _search(client, "听雪剑"))["cache"]["hit"] is True  # type: ignore[index]
            server.kill()
            for i in range(8):
                started = time.monotonic()
                body = await _search(client, "听雪剑" if i % 2 else f"玄霜城{i}")
                assert body["hits"] and body["cache"]["hit"] is False  # type: ignore[index]
                assert time.monotonic() - started < 2.0
            ready = (await client.get("/v1/ready")).json()
            assert ready["ready"] is True and ready["cache"]["available"] is False
            server.start()
            await asyncio.sleep(6)  # the circuit breaker's cool-down
            await _search(client, "听雪剑")
            await asyncio.sleep(0.2)
            assert (await _search(client, "听雪剑"))["cache"]["hit"] is True  # type: ignore[index]
    finally:
        server.kill()


async def test_in_process_cache_is_the_default(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    await _search(client, "断剑客")
    await asyncio.sleep(0.05)
    assert (await _search(client, "断剑客"))["cache"] == {"hit": True, "tier": "exact"}
    assert (await client.get("/v1/ready")).json()["cache"]["backend"] == "memory"


async def test_admin_flush_needs_the_key_and_makes_every_answer_a_miss(redis_client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    await _search(redis_client, "断剑客是谁？")
    await asyncio.sleep(0.1)
    assert (await _search(redis_client, "断剑客是谁？"))["cache"] == {"hit": True, "tier": "exact"}

    assert (await redis_client.post("/v1/admin/cache/flush")).status_code == 401
    wrong = await redis_client.post("/v1/admin/cache/flush", headers={"X-API-Key": "not-the-key"})
    assert (wrong.status_code, wrong.json()["code"]) == (403, "invalid_api_key")
    assert (await _search(redis_client, "断剑客是谁？"))["cache"]["hit"] is True  # type: ignore[index]

    flushed = await redis_client.post("/v1/admin/cache/flush", headers={"X-API-Key": ADMIN_KEY})
    assert flushed.status_code == 200, flushed.text
    assert flushed.json()["enabled"] is True and isinstance(flushed.json()["kb_version"], int)
    assert (await _search(redis_client, "断剑客是谁？"))["cache"] == {"hit": False, "tier": None}
