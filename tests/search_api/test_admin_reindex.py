"""Switching the embedding model through the admin API (and the CLI) while the API keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eval.server import free_port
from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.remote_config import RemoteEncoderConfig
from retrieval.engine import ingest_fixture_file, open_knowledge_base
from retrieval.settings import load_settings
from search_api.app import create_app
from search_api.cli import main
from search_api.settings import ApiSettings
from tests.conftest import HashingEncoder
from tests.retrieval.encoders.embedding_server import EmbeddingServer
from tests.search_api.conftest import ADMIN_KEY, until_ready

pytestmark = pytest.mark.integration

MODEL = "qwen3-embedding:0.6b"
SPEC = f"ollama/{MODEL}"
KEY = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def embedding_server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer(dim=24, ollama_models=[MODEL]) as server:
        yield server


@pytest.fixture
def remote_settings(api_settings: ApiSettings, embedding_server: EmbeddingServer) -> ApiSettings:
    """The API starts on the test encoder; `ollama/...` specs reach the loopback embedding server."""
    remote = RemoteEncoderConfig("ollama", embedding_server.base_url, MODEL, max_attempts=1)
    return dataclasses.replace(
        api_settings, engine=dataclasses.replace(api_settings.engine, remote_encoder=remote)
    )


async def _ready(client: AsyncTestClient[Litestar], app: Litestar) -> None:
    for _ in range(600):
        if (await client.get("/v1/ready")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not ready: {app.state.serving.phase} {app.state.serving.error}")


@pytest.fixture
async def admin_client(remote_settings: ApiSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(remote_settings, encoder=HashingEncoder())
    async with AsyncTestClient(app=app) as client:
        await _ready(client, app)
        yield client


async def _wait_finished(client: AsyncTestClient[Litestar]) -> dict[str, Any]:
    for _ in range(400):
        status: dict[str, Any] = (await client.get("/v1/admin/reindex", headers=KEY)).json()
        if status["state"] != "running":
            return status
        await asyncio.sleep(0.05)
    pytest.fail("the reindex did not finish")


async def test_reindex_needs_the_key_runs_while_serving_and_rolls_back(
    admin_client: AsyncTestClient[Litestar], embedding_server: EmbeddingServer
) -> None:
    client = admin_client
    for method, path in (
        ("POST", "/v1/admin/reindex"),
        ("GET", "/v1/admin/reindex"),
        ("POST", "/v1/admin/reindex/rollback"),
    ):
        response = await client.request(method, path, json={"to": SPEC} if method == "POST" else None)
        assert response.status_code == 401 and response.json()["code"] == "missing_api_key", path
    wrong = await client.post("/v1/admin/reindex", json={"to": SPEC}, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403
    idle = (await client.get("/v1/admin/reindex", headers=KEY)).json()
    assert idle["state"] == "idle" and idle["active"] == "kb_chunks" and idle["model_id"] == "test-hashing"
    bad = await client.post("/v1/admin/reindex", json={"to": "cohere/x"}, headers=KEY)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_encoder_spec"
    nothing = await client.post("/v1/admin/reindex/rollback", headers=KEY)
    assert nothing.status_code == 409 and nothing.json()["code"] == "no_previous_collection"

    before = (await client.post("/v1/search", json={"query": "断剑客", "mode": "sparse"})).json()
    # Slow replies keep the job running long enough to watch it and to search meanwhile.
    embedding_server.delay_s = 0.15
    started = await client.post("/v1/admin/reindex", json={"to": SPEC, "batch": 1}, headers=KEY)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["state"] == "running" and job["target"] == SPEC and job["id"]

    again = await client.post("/v1/admin/reindex", json={"to": SPEC}, headers=KEY)
    assert again.status_code == 409 and again.json()["code"] == "reindex_in_progress"
    busy = await client.post("/v1/admin/reindex/rollback", headers=KEY)
    assert busy.status_code == 409 and busy.json()["code"] == "reindex_in_progress"

    answered = 0
    while (status := (await client.get("/v1/admin/reindex", headers=KEY)).json())["state"] == "running":
        assert status["id"] == job["id"] and status["done"] <= status["total"]
        found = await client.post("/v1/search", json={"query": "断剑客"})
        assert found.status_code == 200 and found.json()["hits"][0]["doc_id"] == "char-1"
        answered += 1
    assert answered >= 2
    assert status["state"] == "succeeded", status
    assert status["done"] == status["total"] == 3
    assert status["collection"] == status["active"] != "kb_chunks"
    assert (status["model_id"], status["dim"]) == (SPEC, 24)

    ready = (await client.get("/v1/ready")).json()
    assert ready["encoder"]["model_id"] == SPEC and ready["store"]["chunks"] == 3
    embedding_server.delay_s = 0.0
    dense = (await client.post("/v1/search", json={"query": "断剑客", "mode": "dense"})).json()
    assert dense["hits"] and dense["degraded"] is False
    after = (await client.post("/v1/search", json={"query": "断剑客", "mode": "sparse"})).json()
    assert [(h["id"], h["score"]) for h in after["hits"]] == [(h["id"], h["score"]) for h in before["hits"]]

    back = await client.post("/v1/admin/reindex/rollback", headers=KEY)
    assert back.status_code == 200, back.text
    body = back.json()
    assert body["active"] == "kb_chunks" and body["replaced"] == status["collection"]
    assert (body["model_id"], body["dim"]) == ("test-hashing", 64)
    ready = (await client.get("/v1/ready")).json()
    assert ready["encoder"]["model_id"] == "test-hashing" and ready["store"]["chunks"] == 3
    assert (await client.post("/v1/search", json={"query": "断剑客"})).json()["hits"][0]["doc_id"] == "char-1"


@pytest.mark.e2e
async def test_cli_reindex_and_rollback_through_a_running_server(
    remote_settings: ApiSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(remote_settings, encoder=HashingEncoder()),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            await until_ready(http, within_s=60)
            monkeypatch.setenv("SEARCH_API_ADMIN_KEY", ADMIN_KEY)
            monkeypatch.setenv("SEARCH_DATA_DIR", str(remote_settings.engine.data.dir))

            def cli(*args: str) -> int:
                return main(["reindex", *args, "--url", url, "--poll", "0.05", "--no-progress"])

            assert await asyncio.to_thread(cli, "--to", SPEC) == 0
            assert (await http.get("/v1/ready")).json()["encoder"]["model_id"] == SPEC
            assert await asyncio.to_thread(cli, "--to", "cohere/x") == 1
            assert await asyncio.to_thread(cli, "--rollback") == 0
            assert (await http.get("/v1/ready")).json()["encoder"]["model_id"] == "test-hashing"
            monkeypatch.setenv("SEARCH_API_ADMIN_KEY", "wrong-key")
            assert await asyncio.to_thread(cli, "--rollback") == 1
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)


@pytest.mark.e2e
def test_cli_reindex_in_process_without_a_server(
    remote_settings: ApiSettings, embedding_server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "SEARCH_DATA_DIR": str(remote_settings.engine.data.dir),
        "SEARCH_API_PORT": str(free_port()),  # nothing listens there: the CLI works in-process
        "SEARCH_SPARSE_LEXICON": str(remote_settings.engine.data.fixtures),
        "EMBEDDING_PROVIDER": "ollama",
        "EMBEDDING_API_URL": embedding_server.base_url,
        "EMBEDDING_API_MODEL": MODEL,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()

    async def build_collection() -> None:
        # What `serve` leaves behind on this service: the fixtures embedded by the Ollama model.
        encoder = remote_encoder(RemoteEncoderConfig("ollama", embedding_server.base_url, MODEL))
        await encoder.discover_dim()
        kb = await open_knowledge_base(settings, encoder)
        try:
            await ingest_fixture_file(kb, dataclasses.replace(settings, data=remote_settings.engine.data))
        finally:
            await kb.close()

    asyncio.run(build_collection())
    assert main(["reindex", "--to", "openai/text-embedding-3-small", "--no-progress"]) == 0
    assert main(["reindex", "--rollback"]) == 0
    state = json.loads((settings.data.dir / "collections" / "kb_chunks.json").read_text())
    assert state["active"] == "kb_chunks" and state["history"][0]["spec"] == "openai/text-embedding-3-small"
