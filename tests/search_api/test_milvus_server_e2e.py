"""`search-api serve` on a Milvus-protocol server: a search end to end, the server restarted under it.

The server is `milvus-lite server` (tests/milvus_server.py) reached through `MILVUS_URI` as any
Milvus server is, so the API runs the server path: HNSW, INVERTED indexes, the alias pointer. It is
stopped with SIGKILL mid-run and started again on the same port and data: searches answer 503
`store_unavailable` meanwhile, then the same hits again, without restarting the API.
"""

from __future__ import annotations

import json
import signal
import uuid

import httpx
import pytest

from eval.server import free_port
from retrieval.encoders.build import BuiltModel
from tests.api_process import ApiProcess, assert_searches_again, search_uncached
from tests.conftest import seed_model
from tests.milvus_server import MilvusLiteServer
from tests.search_api.conftest import DOCS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_search_through_the_api_survives_a_restart_of_the_milvus_server(
    built_model: BuiltModel, tmp_path_factory: pytest.TempPathFactory, milvus_server: MilvusLiteServer
) -> None:
    root = tmp_path_factory.mktemp("server-e2e")
    data_dir = root / "data"
    seed_model(data_dir, built_model)
    kb = root / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS), encoding="utf-8")
    env = {
        "MILVUS_URI": milvus_server.uri,
        "SEARCH_STORE_COLLECTION": f"kb_{uuid.uuid4().hex[:10]}",
        "SEARCH_DATA_FIXTURES": str(kb),
        "SEARCH_SPARSE_LEXICON": str(kb),
        "SEARCH_ROUTING_TRAIN_ON_START": "false",
    }
    api = ApiProcess(data_dir, free_port(), root / "server.log", env=env)
    try:
        api.start()
        index = httpx.get(f"{api.url}/v1/ready", timeout=30).json()["store"]["index"]
        assert (index["type"], index["build"], index["search"]) == (
            "HNSW",
            {"M": 32, "efConstruction": 200},
            {"ef": 200},
        )
        before = search_uncached(api.url, "断剑客")
        assert before.status_code == 200, before.text
        ids_before = [h["id"] for h in before.json()["hits"]]
        assert ids_before and ids_before[0].startswith("char-1")
        explained = before.json()["hits"][0]["explanation"]
        assert explained["dense"] is not None and explained["sparse"] is not None  # hybrid, both sides

        milvus_server.stop(signal.SIGKILL)
        for query in ["断剑客", "玄霜城在哪里"]:
            down = search_uncached(api.url, query)
            assert down.status_code == 503, down.text
            assert down.json()["code"] == "store_unavailable"
        ready = httpx.get(f"{api.url}/v1/ready", timeout=30)
        assert ready.status_code == 503 and ready.json()["store"]["ready"] is False

        milvus_server.start()
        assert_searches_again(api.url, ids_before, attempts=240, after="the server answered")
    finally:
        api.stop()
        if milvus_server.proc is None or milvus_server.proc.poll() is not None:
            milvus_server.start()  # the session's other tests expect it up
