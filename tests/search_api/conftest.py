"""An app over real Milvus Lite with the fast test encoder, and a client for it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from retrieval.settings import Settings
from search_api.app import create_app
from search_api.settings import ApiSettings, ServiceSettings
from tests.conftest import HashingEncoder

ADMIN_KEY = "test-admin-key-0123456789"

DOCS = [
    {
        "id": "char-1",
        "title": "沈青崖",
        "kind": "character",
        "aliases": ["断剑客"],
        "text": "沈青崖是玄霜城的剑客，人称断剑客。",
    },
    {
        "id": "loc-1",
        "title": "玄霜城",
        "kind": "location",
        "text": "玄霜城位于北境，终年积雪。",
        "metadata": {"region": "北境"},
    },
    {"id": "item-1", "title": "听雪剑", "kind": "item", "text": "听雪剑断为两截，是沈青崖的佩剑。"},
]


def api(settings: Settings, **service: Any) -> ApiSettings:
    """API settings over engine `settings`, with `service` fields (keys, CORS) set."""
    return ApiSettings(engine=settings, service=ServiceSettings(**service))


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> ApiSettings:
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS), encoding="utf-8")
    data = dataclasses.replace(settings.data, fixtures=kb)
    sparse = dataclasses.replace(settings.sparse, lexicon=(str(kb),))
    return api(dataclasses.replace(settings, data=data, sparse=sparse), admin_key=ADMIN_KEY)


@asynccontextmanager
async def serving(settings: ApiSettings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """A test client of an app over `settings`, once its engine is ready."""
    app = create_app(settings, encoder=HashingEncoder())
    async with AsyncTestClient(app=app) as test_client:
        # The app runs on the test client's own loop; poll readiness as a real client would.
        for _ in range(600):
            if (await test_client.get("/v1/ready")).status_code == 200 or app.state.serving.phase == "failed":
                break
            await asyncio.sleep(0.05)
        assert app.state.serving.phase == "ready", app.state.serving.error
        yield test_client


@pytest.fixture
async def client(api_settings: ApiSettings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with serving(api_settings) as test_client:
        yield test_client


async def until_ready(http: httpx.AsyncClient, *, within_s: float) -> None:
    """Poll `/v1/ready` on a server started in this process until it answers 200."""
    deadline = time.monotonic() + within_s
    while True:
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/v1/ready")).status_code == 200:
                return
        assert time.monotonic() < deadline, "server did not become ready"
        await asyncio.sleep(0.1)
