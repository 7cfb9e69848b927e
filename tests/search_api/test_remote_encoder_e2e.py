"""The API on a remote Ollama-compatible embedding service: it ingests and searches through it, and
answers degraded (BM25 only) when the service stops, recovering when it returns."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from litestar.testing import AsyncTestClient

from retrieval.settings import load_settings
from search_api.app import create_app
from search_api.settings import ApiSettings
from tests.retrieval.encoders.embedding_server import EmbeddingServer

pytestmark = pytest.mark.integration

READY_DEADLINE_S = 240.0


async def _wait_ready(client: AsyncTestClient, app_state: object) -> None:  # type: ignore[type-arg]
    # A deadline, not a count of polls: on a busy machine start-up (model, fixtures) may take long,
    # and only a start that never finishes should fail here.
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if (await client.get("/v1/ready")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not ready: {getattr(app_state, 'phase', '?')} {getattr(app_state, 'error', '')}")


async def test_serves_through_ollama_and_degrades_when_it_stops(api_settings: ApiSettings) -> None:
    with EmbeddingServer(dim=24, ollama_models=["qwen3-embedding:0.6b"]) as service:
        env = {
            "SEARCH_DATA_DIR": str(api_settings.engine.data.dir),
            "EMBEDDING_PROVIDER": "ollama",
            "EMBEDDING_API_URL": service.base_url,
            "EMBEDDING_API_RETRIES": "1",
            "EMBEDDING_API_TIMEOUT_S": "2",
        }
        remote = load_settings(environ=env).remote_encoder
        assert remote is not None
        settings = dataclasses.replace(
            api_settings, engine=dataclasses.replace(api_settings.engine, remote_encoder=remote)
        )
        app = create_app(settings)
        async with AsyncTestClient(app=app) as client:
            await _wait_ready(client, app.state.serving)
            ready = (await client.get("/v1/ready")).json()
            assert (
                ready["encoder"]["model_id"] == "ollama/qwen3-embedding:0.6b"
                and ready["encoder"]["dim"] == 24
            )
            assert ready["store"]["chunks"] == 3 and ready["degraded"] is False
            assert service.embed_requests  # the fixtures were embedded by the service

            ok = (await client.post("/v1/search", json={"query": "断剑客", "cache": False})).json()
            assert ok["degraded"] is False and ok["hits"][0]["doc_id"] == "char-1"
            assert ok["hits"][0]["explanation"]["dense"] is not None

            service.stop()
            down = await client.post("/v1/search", json={"query": "断剑客", "cache": False})
            assert down.status_code == 200
            body = down.json()
            assert body["degraded"] is True and body["hits"][0]["doc_id"] == "char-1"
            assert body["hits"][0]["explanation"]["dense"] is None
            ready = await client.get("/v1/ready")
            assert ready.status_code == 200 and ready.json()["degraded"] is True
            dense_only = await client.post(
                "/v1/search", json={"query": "断剑客", "mode": "dense", "cache": False}
            )
            assert dense_only.status_code == 503 and dense_only.json()["code"] == "encoder_unavailable"

            service.restart()
            back = (await client.post("/v1/search", json={"query": "断剑客", "cache": False})).json()
            assert back["degraded"] is False
