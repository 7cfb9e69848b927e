"""Routing through `/v1/search`: forced intents, routing off, out-of-scope, weights in explanations."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

pytestmark = pytest.mark.integration


async def test_forced_route_changes_weights(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = (await client.post("/v1/search", json={"query": "断剑客", "route": "quote"})).json()
    route = body["route"]
    assert route["intent"] == "quote" and route["reason"] == "forced by the request"
    assert route["weights"] == {"dense": 0.5, "sparse": 2.0}
    top = body["hits"][0]["explanation"]
    assert top["weights"] == {"dense": 0.5, "sparse": 2.0}
    assert top["sparse"]["contribution"] == pytest.approx(2.0 / (60 + top["sparse"]["rank"]))


async def test_route_none_turns_routing_off(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = (await client.post("/v1/search", json={"query": "断剑客", "route": "none"})).json()
    assert body["route"] is None
    assert body["hits"][0]["explanation"]["weights"] == {"dense": 1.0, "sparse": 1.0}


async def test_out_of_scope_answers_empty_with_a_reason(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = (
        await client.post("/v1/search", json={"query": "明天北京天气怎么样", "route": "out_of_scope"})
    ).json()
    assert body["hits"] == []
    assert body["route"]["out_of_scope"] is True and body["route"]["reason"]
