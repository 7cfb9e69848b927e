"""The Milvus store against both backends it serves: embedded Milvus Lite and a Milvus-protocol server.

The server is `milvus-lite server` (tests/milvus_server.py), reached by URI like any Milvus server,
so these run the server code path: HNSW, INVERTED scalar indexes, the model record in collection
properties. Every test runs on both backends unless it is about one of them.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from pymilvus import MilvusClient

from retrieval.errors import ModelMismatch
from retrieval.store.layout import chunk_schema, model_properties
from retrieval.store.milvus import MilvusStore
from retrieval.types import ChunkRecord, SearchFilter
from tests.milvus_server import MilvusLiteServer

pytestmark = pytest.mark.integration

DIM = 8
StoreFactory = Callable[[str], MilvusStore]


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A Milvus URI: a Lite file in a temp folder, or the session's Milvus-protocol server."""
    if request.param == "server":
        server: MilvusLiteServer = request.getfixturevalue("milvus_server")
        return server.uri
    return str(tmp_path / "milvus.db")


@pytest.fixture
def name() -> str:
    """A collection name of this test's own (the server is shared by the session)."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def stores(backend: str) -> AsyncIterator[StoreFactory]:
    """Stores on `backend`, closed (and their collections dropped) after the test."""
    opened: list[MilvusStore] = []

    def make(collection: str) -> MilvusStore:
        store = MilvusStore(backend, collection, timeout_s=10.0, search_timeout_s=10.0)
        opened.append(store)
        return store

    yield make
    for store in opened:
        if await store.exists():
            await store.drop()
        await store.close()


def _vector(seed: int) -> np.ndarray:
    vec = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vec / np.linalg.norm(vec)


def _record(doc: str, n: int, kind: str, seed: int, sparse: dict[int, float]) -> ChunkRecord:
    return ChunkRecord(
        id=f"{doc}#{n}",
        doc_id=doc,
        title=f"标题{doc}",
        kind=kind,
        text=f"{doc} 第{n}段",
        chunk_index=n,
        metadata={"realm": "金丹" if seed % 2 else "筑基", "rank": seed},
        dense=_vector(seed),
        sparse=sparse,
        terms={"剑": [1, seed]},
        length=seed + 1,
    )


RECORDS = [
    _record("char-1", 0, "character", 1, {1: 2.0, 2: 0.5}),
    _record("char-1", 1, "character", 2, {2: 1.0}),
    _record("item-1", 0, "item", 3, {1: 0.25, 3: 1.0}),
    _record("item-2", 0, "item", 4, {3: 3.0}),
    _record("place-1", 0, "place", 5, {4: 1.0}),
]


async def test_the_model_record_survives_a_reopen_and_guards_the_collection(
    stores: StoreFactory, name: str
) -> None:
    first = stores(name)
    created = await first.open("model-a", DIM)
    assert (created.model_id, created.dim, created.rows) == ("model-a", DIM, 0)
    await first.close()

    again = stores(name)
    reopened = await again.open("model-a", DIM)
    assert (reopened.model_id, reopened.dim) == ("model-a", DIM)
    assert (await again.describe()).model_id == "model-a"
    with pytest.raises(ModelMismatch, match=r"built with model 'model-a' \(dim 8\)"):
        await stores(name).open("model-b", DIM)
    with pytest.raises(ModelMismatch, match="model-a"):
        await stores(name).open("model-a", DIM * 2)


async def test_concurrent_searches_share_engine_calls_and_get_their_own_hits(
    stores: StoreFactory, name: str
) -> None:
    store = stores(name)
    await store.open("model-a", DIM)
    await store.upsert(RECORDS)
    queries = [_vector(seed) for seed in range(1, 9)]
    alone = []
    for q in queries:
        alone.append([(h.id, round(h.score, 5)) for h in await store.search_dense(q, 3, SearchFilter())])
    calls = store.search_calls
    together = await asyncio.gather(*(store.search_dense(q, 3, SearchFilter()) for q in queries))
    # The first search may go alone; the seven that arrived while it was in flight share one call.
    assert store.search_calls - calls <= 2
    assert [[(h.id, round(h.score, 5)) for h in hits] for hits in together] == alone
    # Searches that differ in filter or depth never share a call, and each keeps its own answer.
    items, deeper = await asyncio.gather(
        store.search_dense(queries[0], 5, SearchFilter.build(kinds="item")),
        store.search_dense(queries[0], 5, SearchFilter()),
    )
    assert {h.kind for h in items} == {"item"} and len(deeper) == len(RECORDS)
    assert not store._batchers  # idle batchers are dropped


async def test_upsert_search_filter_iterate_and_delete(stores: StoreFactory, name: str) -> None:
    store = stores(name)
    await store.open("model-a", DIM)
    await store.upsert(RECORDS)
    assert await store.count() == len(RECORDS)

    nearest = await store.search_dense(_vector(3), 3, SearchFilter())
    assert nearest[0].id == "item-1#0" and nearest[0].score == pytest.approx(1.0, abs=1e-4)
    assert (nearest[0].title, nearest[0].kind, nearest[0].metadata) == (
        "标题item-1",
        "item",
        RECORDS[2].metadata,
    )
    items = await store.search_dense(_vector(1), 5, SearchFilter.build(kinds="item"))
    assert {h.id for h in items} == {"item-1#0", "item-2#0"}
    by_doc = await store.search_dense(_vector(1), 5, SearchFilter.build(doc_ids=["char-1"]))
    assert {h.id for h in by_doc} == {"char-1#0", "char-1#1"}
    by_meta = await store.search_dense(_vector(1), 5, SearchFilter.build(metadata={"realm": "金丹"}))
    assert {h.id for h in by_meta} == {"char-1#0", "item-1#0", "place-1#0"}

    # Inner product with the query's sparse vector, every term kept (drop ratio 0).
    sparse = await store.search_sparse({1: 1.0, 3: 2.0}, 10, SearchFilter())
    assert [(h.id, round(h.score, 4)) for h in sparse] == [
        ("item-2#0", 6.0),
        ("item-1#0", 2.25),
        ("char-1#0", 2.0),
    ]
    assert await store.search_sparse({}, 10, SearchFilter()) == []

    copied = [
        chunk async for batch in store.iterate_chunks(after="char-1#0", batch_size=2) for chunk in batch
    ]
    assert [c.id for c in copied] == ["char-1#1", "item-1#0", "item-2#0", "place-1#0"]
    assert (
        copied[1].sparse == {1: 0.25, 3: 1.0} and copied[1].terms == {"剑": [1, 3]} and copied[1].length == 4
    )
    terms = await store.chunk_terms(["char-1"])
    assert sorted((t.chunk_id, t.length) for t in terms) == [("char-1#0", 2), ("char-1#1", 3)]

    rewritten = await store.rewrite_sparse(lambda t: {9: float(t.length)})
    assert rewritten == len(RECORDS)
    assert [h.id for h in await store.search_sparse({9: 1.0}, 2, SearchFilter())] == ["place-1#0", "item-2#0"]

    await store.delete(["char-1#0", "char-1#1"])
    assert await store.count() == len(RECORDS) - 2
    assert await store.chunks(["char-1"]) == []
    assert {c.id for c in await store.chunks(["item-1", "item-2"])} == {"item-1#0", "item-2#0"}


def _indexes(uri: str, collection: str) -> dict[str, dict[str, object]]:
    client = MilvusClient(uri=uri)
    try:
        return {i: client.describe_index(collection, i) for i in client.list_indexes(collection)}
    finally:
        client.close()


async def test_index_choice_per_backend(stores: StoreFactory, name: str, backend: str) -> None:
    store = stores(name)
    await store.open("model-a", DIM)
    await store.upsert(RECORDS)
    indexes = _indexes(backend, name)
    assert indexes["sparse"]["index_type"] == "SPARSE_INVERTED_INDEX"
    if store.lite:
        # Milvus Lite 2.5 has no HNSW and no scalar indexes: exact search, filters by scan.
        assert set(indexes) == {"dense", "sparse"} and indexes["dense"]["index_type"] == "FLAT"
        assert store.dense_search_params(10) == {"metric_type": "COSINE"}
        assert store.dense_index == {"type": "FLAT", "metric": "COSINE", "build": {}, "search": {}}
        return
    dense = indexes["dense"]
    assert (dense["index_type"], dense["metric_type"]) == ("HNSW", "COSINE")
    assert dense["params"] == {"M": 32, "efConstruction": 200}
    assert indexes["kind"]["index_type"] == indexes["doc_id"]["index_type"] == "INVERTED"
    assert indexes["sparse"]["params"] == {"drop_ratio_build": 0.0}
    # ef 200, and never below the number of hits asked for (HNSW cannot return more than ef).
    assert store.dense_search_params(10) == {"metric_type": "COSINE", "params": {"ef": 200}}
    assert store.dense_search_params(300)["params"] == {"ef": 300}
    assert store.dense_index == {
        "type": "HNSW",
        "metric": "COSINE",
        "build": {"M": 32, "efConstruction": 200},
        "search": {"ef": 200},
    }
    assert len(await store.search_dense(_vector(1), 300, SearchFilter())) == len(RECORDS)


async def test_a_collection_left_without_indexes_is_mended_on_open(
    stores: StoreFactory, name: str, backend: str
) -> None:
    # What a creation cut short between create_collection and create_index leaves behind.
    client = MilvusClient(uri=backend)
    try:
        client.create_collection(
            name, schema=chunk_schema("model-a", DIM), properties=model_properties("model-a", DIM)
        )
        assert client.list_indexes(name) == []
    finally:
        client.close()
    store = stores(name)
    await store.open("model-a", DIM)
    assert {"dense", "sparse"} <= set(_indexes(backend, name))
    await store.upsert(RECORDS)
    assert (await store.search_dense(_vector(3), 1, SearchFilter()))[0].id == "item-1#0"
    assert (await store.search_sparse({4: 1.0}, 1, SearchFilter()))[0].id == "place-1#0"


def test_a_server_that_cannot_start_fails_rather_than_skips(tmp_path: Path) -> None:
    # Its port is taken: the server exits, and the fixture's start fails the test with its log.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        server = MilvusLiteServer(tmp_path / "data", int(taken.getsockname()[1]), tmp_path / "server.log")
        with pytest.raises(pytest.fail.Exception, match="milvus-lite server exited"):
            server.start()
    assert server.proc is not None and server.proc.poll() is not None


async def test_a_released_collection_is_loaded_again_by_the_next_search(
    stores: StoreFactory, name: str, backend: str
) -> None:
    # What a restarted server can come back with (Milvus Lite's server always does).
    store = stores(name)
    await store.open("model-a", DIM)
    await store.upsert(RECORDS)
    client = MilvusClient(uri=backend)
    try:
        client.release_collection(name)
    finally:
        client.close()
    assert (await store.search_dense(_vector(3), 1, SearchFilter()))[0].id == "item-1#0"
    assert await store.count() == len(RECORDS)
