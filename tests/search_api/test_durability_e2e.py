"""An acknowledged ingest is on disk: kill -9 the server right after its 200, restart, find it all."""

from __future__ import annotations

import signal

import httpx
import pytest

from eval.server import free_port
from retrieval.encoders.build import BuiltModel
from tests.api_process import ApiProcess
from tests.conftest import seed_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "durability-test-key"


def test_acknowledged_chunks_survive_kill_9(
    built_model: BuiltModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("durable") / "data"
    seed_model(data_dir, built_model)
    env = {"SEARCH_API_ADMIN_KEY": KEY, "SEARCH_ROUTING_TRAIN_ON_START": "false"}
    server = ApiProcess(data_dir, free_port(), data_dir.parent / "server.log", env=env)
    server.start()
    acknowledged: dict[str, int] = {}
    try:
        for batch in range(4):
            docs = [
                {
                    "id": f"dur-{batch}-{i}",
                    "title": f"持久条目{batch}{i}号",
                    "kind": "lore",
                    "text": f"第{batch}批第{i}条：记载青铜漏壶第{batch * 10 + i}次报时。" * (1 + i % 3),
                }
                for i in range(5)
            ]
            reply = httpx.post(
                f"{server.url}/v1/documents", json={"documents": docs}, headers={"X-API-Key": KEY}, timeout=60
            )
            assert reply.status_code == 200, reply.text
            acknowledged.update(reply.json()["per_document"])
    finally:
        # No graceful shutdown: the process dies the instant the last 200 arrived.
        server.stop(signal.SIGKILL)
    server.start()
    try:
        for doc_id, chunks in acknowledged.items():
            found = httpx.post(
                f"{server.url}/v1/search",
                json={"query": "青铜漏壶", "top_k": 50, "cache": False, "filters": {"doc_id": [doc_id]}},
                timeout=30,
            ).json()["hits"]
            assert len(found) == chunks, (doc_id, found)
        ready = httpx.get(f"{server.url}/v1/ready").json()
        assert ready["store"]["chunks"] == 451 + sum(acknowledged.values())
    finally:
        server.stop()
