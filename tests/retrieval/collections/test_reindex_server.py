"""Reindex and rollback against a Milvus-protocol server: the live collection is a Milvus alias.

On a server the pointer is the alias ``<logical>__live`` (retrieval/store/pointer.py), so any
client of the server follows a swap; here every step is checked on the server itself, not only
in the pointer file.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from retrieval.collections.reindex import reindex, rollback
from retrieval.collections.stores import pointer_for
from retrieval.documents import Document
from retrieval.engine import open_knowledge_base
from retrieval.knowledge_base import KnowledgeBase
from retrieval.settings import Settings, load_settings
from retrieval.store.milvus import MilvusStore
from retrieval.store.pointer import AliasPointer
from retrieval.types import SearchFilter
from tests.conftest import HashingEncoder
from tests.milvus_server import MilvusLiteServer

pytestmark = pytest.mark.integration


@pytest.fixture
def server_settings(tmp_path: Path, milvus_server: MilvusLiteServer) -> Settings:
    """A private data folder, the shared server, and a logical collection of this test's own."""
    return load_settings(
        environ={
            "SEARCH_DATA_DIR": str(tmp_path / "data"),
            "MILVUS_URI": milvus_server.uri,
            "SEARCH_STORE_COLLECTION": f"kb_{uuid.uuid4().hex[:10]}",
        }
    )


def _on_server(uri: str, alias: str) -> tuple[str, int]:
    """The collection `alias` names on the server, and the rows a query through the alias counts."""
    client = MilvusClient(uri=uri)
    try:
        named = str(client.describe_alias(alias)["collection_name"])
        rows = client.query(alias, filter="", output_fields=["count(*)"])
        return named, int(rows[0]["count(*)"])
    finally:
        client.close()


def _live(kb: KnowledgeBase) -> MilvusStore:
    assert isinstance(kb.store, MilvusStore)
    return kb.store


async def test_reindex_moves_the_alias_and_rollback_moves_it_back(
    server_settings: Settings, milvus_server: MilvusLiteServer
) -> None:
    settings = server_settings
    pointer = pointer_for(settings)
    assert isinstance(pointer, AliasPointer)
    kb = await open_knowledge_base(settings, HashingEncoder())
    try:
        source = _live(kb).collection
        await kb.ingest(
            [Document(id=f"d{i}", title=f"条目{i}", text=f"第{i}条：玄霜城的往事。") for i in range(8)]
        )
        assert not _live(kb).lite

        report = await reindex(kb, HashingEncoder(32, "hash-32"), settings=settings, spec="hash-32", batch=3)
        await report.retired_encoder.close()
        assert (report.source, report.rows) == (source, 8) and report.target != source
        assert _on_server(milvus_server.uri, pointer.alias) == (report.target, 8)
        assert (await pointer.active(), await pointer.previous()) == (report.target, source)
        assert _live(kb).collection == report.target and (await _live(kb).describe()).dim == 32
        query = kb.sparse.query_vector("第3条：玄霜城的往事。")
        assert query
        hits = await kb.store.search_sparse(query, 3, SearchFilter())
        assert hits[0].id == "d3#0"

        # A write after the swap reaches the previous collection through the rollback's replay.
        await kb.ingest([Document(id="late", title="雪原", text="雪原上的狼群在月下迁徙。")])
        back = await rollback(kb, HashingEncoder(), settings=settings)
        await back.retired_encoder.close()
        assert (back.active, back.replaced, back.replayed_documents) == (source, report.target, 1)
        assert _on_server(milvus_server.uri, pointer.alias) == (source, 9)
        assert (await pointer.active(), await pointer.previous()) == (source, report.target)
        assert _live(kb).collection == source and (await _live(kb).describe()).model_id == "test-hashing"
    finally:
        await kb.close()
