"""`POST /v1/search`: results with explanations, and every bad input as a 4xx with a stable code."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

pytestmark = pytest.mark.integration


async def test_search_returns_hits_with_explanations(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.post("/v1/search", json={"query": "断剑客", "top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hits"][0]["doc_id"] == "char-1"
    assert len(body["hits"]) == 2
    assert body["cache"] == {"hit": False, "tier": None} and body["degraded"] is False
    # No trained head for the test encoder: the router takes the default route.
    assert body["route"]["intent"] == "default"
    hit = body["hits"][0]
    assert {"id", "doc_id", "title", "kind", "text", "score", "explanation"} <= set(hit)
    exp = hit["explanation"]
    contributions = sum(exp[s]["contribution"] for s in ("dense", "sparse") if exp[s])
    assert hit["score"] == pytest.approx(contributions)
    assert exp["rrf_k"] == 60
    assert {hit["text"][m["start"] : m["end"]] for m in hit["highlights"]} == {"断剑客", "剑客"}
    assert "<em>断剑客</em>" in hit["highlighted"]
    assert response.headers["x-request-id"]


async def test_filters_and_modes(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = (await client.post("/v1/search", json={"query": "沈青崖", "filters": {"kind": ["item"]}})).json()
    assert {h["kind"] for h in body["hits"]} == {"item"}
    meta = await client.post(
        "/v1/search", json={"query": "积雪", "filters": {"metadata": {"region": "北境"}}}
    )
    assert [h["doc_id"] for h in meta.json()["hits"]] == ["loc-1"]
    for mode in ("dense", "sparse", "hybrid"):
        r = await client.post("/v1/search", json={"query": "玄霜城", "mode": mode})
        assert r.status_code == 200 and r.json()["hits"][0]["doc_id"] == "loc-1", mode


async def test_offset_pages_are_stable_and_disjoint(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    full = (await client.post("/v1/search", json={"query": "剑", "top_k": 3})).json()["hits"]
    page1 = (await client.post("/v1/search", json={"query": "剑", "top_k": 2, "offset": 0})).json()["hits"]
    page2 = (await client.post("/v1/search", json={"query": "剑", "top_k": 2, "offset": 2})).json()["hits"]
    assert [h["id"] for h in page1 + page2] == [h["id"] for h in full]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"query": ""}, "empty_query", "query"),
        ({"query": "   \n\t"}, "empty_query", "query"),
        ({"query": "剑" * 513}, "query_too_long", "query"),
        ({"query": "剑", "top_k": 0}, "invalid_top_k", "top_k"),
        ({"query": "剑", "top_k": 101}, "invalid_top_k", "top_k"),
        ({"query": "剑", "offset": -1}, "invalid_offset", "offset"),
        ({"query": "剑", "top_k": "ten"}, "invalid_type", "top_k"),
        ({"query": 42}, "invalid_type", "query"),
        ({"query": "剑", "mode": "fuzzy"}, "invalid_value", "mode"),
        ({"query": "剑", "filters": {"colour": "red"}}, "unknown_field", "filters.colour"),
        ({"query": "剑", "size": 3}, "unknown_field", "size"),
        ({"top_k": 3}, "missing_field", "query"),
        ({"query": "剑", "filters": {"kind": 'item" or 1==1'}}, "invalid_filter", "filters.kind"),
        ({"query": "剑", "filters": {"doc_id": ['a") or (1==1']}}, "invalid_filter", "filters.doc_id"),
        (
            {"query": "剑", "filters": {"metadata": {"region": 'x" or kind != "y'}}},
            "invalid_filter",
            "filters.metadata.region",
        ),
        ({"query": "剑", "filters": {"metadata": {"a": [1, 2]}}}, "invalid_type", "filters.metadata"),
        ({"query": "剑", "route": "no-such-intent"}, "unknown_route", "route"),
        ({"query": "剑", "mode": "sparse", "route": "quote"}, "unknown_route", "route"),
    ],
)
async def test_bad_input_gets_a_4xx_with_a_stable_code(
    client: AsyncTestClient,  # type: ignore[type-arg]
    body: dict[str, Any],
    code: str,
    field: str,
) -> None:
    response = await client.post("/v1/search", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"query": "剑",'.encode(), "malformed_json"),
        (b"not json", "malformed_json"),
        (b"[1, 2]", "invalid_type"),
        (b"", "malformed_json"),
    ],
)
async def test_malformed_bodies(client: AsyncTestClient, raw: bytes, code: str) -> None:  # type: ignore[type-arg]
    response = await client.post("/v1/search", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


async def test_oversized_body_is_413(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.post("/v1/search", content=b'{"query": "' + b"a" * (5 * 1024 * 1024) + b'"}')
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


async def test_unknown_route_and_method(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/v1/nothing")).json()["code"] == "not_found"
    response = await client.get("/v1/search")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


@pytest.mark.integration
async def test_operators_inside_a_filter_value_match_nothing_rather_than_everything(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    def body(region: str) -> dict[str, Any]:
        return {"query": "玄霜城 北境", "filters": {"metadata": {"region": region}}, "cache": False}

    honest = await client.post("/v1/search", json=body("北境"))
    assert [h["doc_id"] for h in honest.json()["hits"]] == ["loc-1"]
    for attack in ("北境) or (1==1", "x || true", "北境' or '1'='1"):
        reply = await client.post("/v1/search", json=body(attack))
        assert reply.status_code == 200, reply.text
        assert reply.json()["hits"] == [], attack
