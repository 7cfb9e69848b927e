"""Liveness, readiness and the OpenAPI schema."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from litestar.testing import AsyncTestClient

from search_api.app import create_app
from search_api.settings import ApiSettings

pytestmark = pytest.mark.integration


async def test_health_ready_and_schema(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/v1/health")).json() == {"status": "ok"}
    ready = await client.get("/v1/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert (
        body["ready"] is True
        and body["encoder"]["model_id"] == "test-hashing"
        and body["store"]["chunks"] == 3
    )
    # Milvus Lite's default: exact search.
    assert body["store"]["index"] == {"type": "FLAT", "metric": "COSINE", "build": {}, "search": {}}
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/v1/search" in schema["paths"] and "/v1/documents" in schema["paths"]


async def test_failed_start_up_is_reported_not_fatal(api_settings: ApiSettings) -> None:
    model = dataclasses.replace(api_settings.engine.model, checkpoint="/nonexistent")
    broken = dataclasses.replace(api_settings, engine=dataclasses.replace(api_settings.engine, model=model))
    app = create_app(broken)
    async with AsyncTestClient(app=app) as client:
        for _ in range(200):
            ready = await client.get("/v1/ready")
            if app.state.serving.phase == "failed":
                break
            assert ready.status_code == 503
            await asyncio.sleep(0.05)
        ready = await client.get("/v1/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert "failed" in ready.json()["detail"]
        response = await client.post("/v1/search", json={"query": "剑"})
        assert response.status_code == 503 and response.json()["code"] == "not_ready"
        assert (await client.get("/v1/health")).status_code == 200
