"""Fusion through `/v1/search`: learned with explanations, RRF equal to plain weighted RRF, bad values 400."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from retrieval.settings import FusionSettings, Settings, load_settings
from search_api.settings import ApiSettings
from tests.retrieval.ranking.toy import toy_ranker_folder
from tests.search_api.conftest import serving

pytestmark = pytest.mark.integration


def _with_fusion(api: ApiSettings, method: str, ranker: str = "") -> ApiSettings:
    engine: Settings = api.engine
    fusion = dataclasses.replace(engine.fusion, method=method, ranker=ranker)
    return dataclasses.replace(api, engine=dataclasses.replace(engine, fusion=fusion))


@pytest.fixture
async def learned(api_settings: ApiSettings, tmp_path: Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    folder = tmp_path / "ranker"
    toy_ranker_folder(folder, "test-hashing")  # the test encoder's model id
    async with serving(_with_fusion(api_settings, method="learned", ranker=str(folder))) as client:
        yield client


async def test_learned_fusion_explains_each_hit(learned: AsyncTestClient) -> None:  # type: ignore[type-arg]
    ready = (await learned.get("/v1/ready")).json()
    assert (
        ready["ranking"]["served"] == "learned" and ready["ranking"]["ranker"]["model_id"] == "test-hashing"
    )
    body = (await learned.post("/v1/search", json={"query": "断剑客", "cache": False})).json()
    assert body["hits"]
    for hit in body["hits"]:
        explanation = hit["explanation"]
        assert explanation["fusion"] == "learned"
        assert explanation["ranker"] and "bias" in explanation["ranker"]
        assert explanation["fused_score"] == hit["score"]
        assert explanation["dense"] is not None or explanation["sparse"] is not None
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)


async def test_rrf_fusion_is_plain_weighted_rrf(api_settings: ApiSettings, tmp_path: Path) -> None:
    body = {"query": "沈青崖的佩剑", "route": "none", "cache": False}
    folder = tmp_path / "ranker"
    toy_ranker_folder(folder, "test-hashing")
    async with serving(_with_fusion(api_settings, method="learned", ranker=str(folder))) as client:
        asked = (await client.post("/v1/search", json={**body, "fusion": "rrf"})).json()
    async with serving(_with_fusion(api_settings, method="rrf")) as client:
        configured = (await client.post("/v1/search", json=body)).json()
    hits = asked["hits"]
    assert hits and [(h["id"], h["score"]) for h in hits] == [
        (h["id"], h["score"]) for h in configured["hits"]
    ]
    for hit in hits:
        explanation = hit["explanation"]
        assert explanation["fusion"] == "rrf" and explanation["ranker"] is None
        # Every source counts: a relation question ("X的佩剑") adds the entity source.
        sources = (explanation["dense"], explanation["sparse"], explanation["entity"])
        expected = sum(1.0 / (60 + s["rank"]) for s in sources if s)
        assert hit["score"] == pytest.approx(expected)


async def test_fusion_is_part_of_the_cache_key(learned: AsyncTestClient) -> None:  # type: ignore[type-arg]
    for _ in range(100):  # the answer is stored off the request path: ask until it is served cached
        if (await learned.post("/v1/search", json={"query": "玄霜城", "fusion": "rrf"})).json()["cache"][
            "hit"
        ]:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the rrf answer was never cached")
    again = (await learned.post("/v1/search", json={"query": "玄霜城", "fusion": "learned"})).json()
    assert again["cache"]["hit"] is False and again["hits"][0]["explanation"]["fusion"] == "learned"


async def test_unknown_fusion_is_a_400_with_a_stable_code(learned: AsyncTestClient) -> None:  # type: ignore[type-arg]
    reply = await learned.post("/v1/search", json={"query": "玄霜城", "fusion": "borda"})
    assert reply.status_code == 400
    assert reply.json()["code"] == "invalid_fusion" and reply.json()["field"] == "fusion"


async def test_without_a_ranker_learned_answers_with_rrf_and_says_so(
    api_settings: ApiSettings, tmp_path: Path
) -> None:
    settings = _with_fusion(api_settings, method="learned", ranker=str(tmp_path / "none-here"))
    async with serving(settings) as client:
        ready = (await client.get("/v1/ready")).json()
        assert ready["ranking"]["served"] == "rrf" and "test-hashing" in ready["ranking"]["detail"]
        body = (await client.post("/v1/search", json={"query": "断剑客", "fusion": "learned"})).json()
        assert body["hits"] and all(h["explanation"]["fusion"] == "rrf" for h in body["hits"])


def test_fusion_settings_are_validated() -> None:
    with pytest.raises(ValueError, match=r"fusion\.method"):
        FusionSettings(method="borda")
    with pytest.raises(ValueError, match=r"fusion\.method"):
        load_settings(environ={"SEARCH_FUSION_METHOD": "borda"})
    assert load_settings(environ={"SEARCH_FUSION_METHOD": "rrf"}).fusion.method == "rrf"


async def test_a_single_retriever_keeps_its_own_order_under_learned(learned: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = (
        await learned.post("/v1/search", json={"query": "断剑客", "mode": "sparse", "cache": False})
    ).json()
    assert body["hits"] and all(h["explanation"]["fusion"] == "rrf" for h in body["hits"])
    assert [h["explanation"]["sparse"]["rank"] for h in body["hits"]] == list(range(1, len(body["hits"]) + 1))


async def test_rank_depth_limits_the_learned_stage_to_the_rrf_top(
    api_settings: ApiSettings, tmp_path: Path
) -> None:
    folder = tmp_path / "ranker"
    toy_ranker_folder(folder, "test-hashing")
    body = {"query": "断剑客", "cache": False, "top_k": 10}
    async with serving(_with_fusion(api_settings, method="rrf")) as client:
        rrf = [h["id"] for h in (await client.post("/v1/search", json=body)).json()["hits"]]
    settings = _with_fusion(api_settings, method="learned", ranker=str(folder))
    engine = settings.engine
    limited = dataclasses.replace(engine, fusion=dataclasses.replace(engine.fusion, rank_depth=2))
    async with serving(dataclasses.replace(settings, engine=limited)) as client:
        hits = (await client.post("/v1/search", json=body)).json()["hits"]
    assert len(rrf) > 2
    # The model ordered RRF's first two and nothing else: a page of 10 holds only those.
    assert sorted(h["id"] for h in hits) == sorted(rrf[:2])
    assert all(h["explanation"]["fusion"] == "learned" for h in hits)
