"""Switching the embedding model over real Milvus Lite: reindex while serving, resume, roll back."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from retrieval.answer import Answer
from retrieval.collections.records import Checkpoint, ReindexPaths, collection_name
from retrieval.collections.reindex import reindex, rollback
from retrieval.collections.specs import encoder_from_spec, local_encoder, parse_spec
from retrieval.collections.stores import pointer_for
from retrieval.documents import Document
from retrieval.encoders.build import BuiltModel
from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.remote import RemoteEncoder
from retrieval.encoders.remote_config import RemoteEncoderConfig
from retrieval.engine import build_tokenizer, open_knowledge_base
from retrieval.errors import ModelMismatch, NoPreviousCollection, PointerError
from retrieval.fusion import WeightedRRF
from retrieval.knowledge_base import KnowledgeBase
from retrieval.service import SearchQuery, SearchService
from retrieval.settings import Settings, load_settings
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.store.milvus import MilvusStore
from retrieval.store.pointer import FilePointer
from retrieval.types import SearchFilter, SearchMode, StoredHit
from tests.conftest import HashingEncoder
from tests.retrieval.encoders.embedding_server import EmbeddingServer

pytestmark = pytest.mark.integration

OLLAMA_MODEL = "qwen3-embedding:0.6b"
QUERIES = ["北京", "历史", "大学", "公司", "比赛"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    """One jieba for the module: loading its dictionary costs about two seconds per pipeline."""
    return build_tokenizer(load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path_factory.mktemp("jieba"))}))


def _docs(paragraphs: list[str], start: int, n: int, chars: int = 10_000) -> list[Document]:
    return [
        Document(id=f"p{i}", title=f"段落{i}", text=paragraphs[i][:chars]) for i in range(start, start + n)
    ]


def _store(settings: Settings, name: str) -> MilvusStore:
    return MilvusStore(settings.milvus_uri, name)


def _live(pipeline: KnowledgeBase) -> MilvusStore:
    store = pipeline.store
    assert isinstance(store, MilvusStore)
    return store


async def _sparse(pipeline: KnowledgeBase, store: MilvusStore, query: str) -> list[tuple[str, float]]:
    hits: list[StoredHit] = await store.search_sparse(pipeline.sparse.query_vector(query), 20, SearchFilter())
    return [(h.id, round(h.score, 5)) for h in hits]


async def _search(kb: KnowledgeBase, text: str, **query: Any) -> Answer:
    """The served answer over `kb` (RRF, no router, no cache)."""
    return (await SearchService(kb, WeightedRRF()).search(SearchQuery(text, **query))).answer


def _dense_score(answer: Answer) -> float:
    dense = answer.hits[0].explanation.dense
    assert dense is not None
    return dense.score


async def _search_loop(pipeline: KnowledgeBase, stop: asyncio.Event, failures: list[BaseException]) -> int:
    """Hybrid searches back to back until told to stop; returns how many ran."""
    done = 0
    while not stop.is_set():
        try:
            outcome = await _search(pipeline, QUERIES[done % len(QUERIES)], top_k=5)
            if not outcome.hits or outcome.degraded:
                raise AssertionError(f"empty or degraded answer: {outcome}")
        except Exception as exc:  # collected, so the test reports every failure, not the first
            failures.append(exc)
        done += 1
        await asyncio.sleep(0)
    return done


async def test_round_trip_local_int8_to_remote_model_and_back(
    settings: Settings,
    built_model: BuiltModel,
    cmrc_paragraphs: list[str],
    tokenizer: JiebaTokenizer,
) -> None:
    # No BM25 re-weighting in this test: Milvus Lite's upsert hides the rows it rewrites from
    # concurrent searches for a moment (a standing limitation of `reweight`, not of the swap),
    # and the search loop below must see every answer.
    settings = dataclasses.replace(settings, sparse=dataclasses.replace(settings.sparse, reweight_drift=10.0))
    local = local_encoder(settings, built_model)
    pipeline = await open_knowledge_base(settings, local, tokenizer=tokenizer)
    with EmbeddingServer(dim=24, ollama_models=[OLLAMA_MODEL]) as server:
        try:
            await pipeline.ingest(_docs(cmrc_paragraphs, 0, 14, chars=120))  # short: the model is slow
            source = _live(pipeline).collection
            assert source == settings.store.collection  # the first collection keeps the logical name
            dense_before = await _search(pipeline, "段落5", mode=SearchMode.DENSE, top_k=3)
            old_vector = await pipeline.encoder.encode_queries(["段落5"])
            version = pipeline.kb_version

            # Slow the target service a little so writes and searches overlap the copy for sure.
            server.delay_s = 0.1
            target = remote_encoder(RemoteEncoderConfig("ollama", server.base_url, OLLAMA_MODEL))
            copying = asyncio.Event()
            stop, failures = asyncio.Event(), list[BaseException]()
            searches = asyncio.create_task(_search_loop(pipeline, stop, failures))
            job = asyncio.create_task(
                reindex(
                    pipeline,
                    target,
                    settings=settings,
                    spec=f"ollama/{OLLAMA_MODEL}",
                    batch=4,
                    on_progress=lambda done, total: copying.set(),
                )
            )
            await copying.wait()
            # Writes acknowledged during the copy go to the old collection and must survive the swap.
            late = Document(id="late-1", title="烽火台", text="霜降之夜，北境的烽火台燃起了第一堆篝火。")
            await pipeline.ingest([late])
            await pipeline.delete(["p3"])
            assert _live(pipeline).collection == source and not job.done()
            report = await job
            stop.set()
            ran = await searches

            assert failures == [] and ran > 10
            assert report.source == source and report.target != source and report.resumed_from == 0
            assert report.replayed_documents >= 2
            live, old = _live(pipeline), _store(settings, source)
            try:
                # Same rows, same sparse vectors: BM25 answers exactly as the old collection does.
                assert await old.exists()
                assert report.rows == await live.count() == await old.count()
                for query in [*QUERIES, "烽火台"]:
                    assert await _sparse(pipeline, live, query) == await _sparse(pipeline, old, query), query
            finally:
                await old.close()
            # A search that embedded its query just before the swap is answered by the old collection.
            straddling = await live.search_dense(old_vector[0], 3, SearchFilter())
            assert [h.id for h in straddling] == [h.id for h in dense_before.hits]
            # Dense search runs on the new model now.
            assert pipeline.encoder.model_id == f"ollama/{OLLAMA_MODEL}" and pipeline.encoder.dim == 24
            assert (await live.describe()).dim == 24
            server.reset_records()
            dense = await _search(pipeline, "烽火台", mode=SearchMode.DENSE, top_k=3)
            assert dense.hits and server.embed_requests[0].inputs == ["烽火台"]
            assert {c.doc_id for c in await live.chunks(["late-1", "p3"])} == {"late-1"}
            assert pipeline.kb_version > version
            pointer = FilePointer(settings.data.dir / "collections" / "kb_chunks.json", "kb_chunks")
            assert (await pointer.active(), await pointer.previous()) == (report.target, source)
            assert (settings.data.dir / "bm25" / f"{report.target}.json").exists()
            assert not ReindexPaths.for_settings(settings).checkpoint.exists()

            # A write after the swap reaches the old collection through the rollback's replay.
            await pipeline.ingest([Document(id="after-1", title="雪原", text="雪原上的狼群在月下迁徙。")])
            back = await rollback(pipeline, local, settings=settings)
            await back.retired_encoder.close()
            assert (back.active, back.replaced) == (source, report.target) and back.replayed_documents == 1
            assert pipeline.encoder is local and _live(pipeline).collection == source
            dense_after = await _search(pipeline, "段落5", mode=SearchMode.DENSE, top_k=3)
            assert dense_after.hits[0].id == dense_before.hits[0].id
            assert _dense_score(dense_after) == pytest.approx(_dense_score(dense_before), abs=1e-4)
            found = await _search(pipeline, "雪原上的狼群", mode=SearchMode.SPARSE, top_k=1)
            assert found.hits[0].doc_id == "after-1"
            assert await pointer.active() == source and await pointer.previous() == report.target
        finally:
            await pipeline.close()


async def test_interrupted_reindex_resumes_and_keeps_writes_across_a_restart(
    settings: Settings,
    cmrc_paragraphs: list[str],
    tokenizer: JiebaTokenizer,
) -> None:
    pipeline = await open_knowledge_base(settings, HashingEncoder(), tokenizer=tokenizer)
    await pipeline.ingest(_docs(cmrc_paragraphs, 0, 20))
    total = await pipeline.store.count()
    target = HashingEncoder(dim=32, model_id="hash-32")
    paths = ReindexPaths.for_settings(settings)

    def cancel_midway(done: int, _: int) -> None:
        if done >= 12:
            job.cancel()

    job = asyncio.create_task(
        reindex(pipeline, target, settings=settings, spec="hash-32", batch=4, on_progress=cancel_midway)
    )
    with pytest.raises(asyncio.CancelledError):
        await job
    checkpoint = Checkpoint.load(paths.checkpoint)
    assert checkpoint is not None and 12 <= checkpoint.copied < total
    assert _live(pipeline).collection == "kb_chunks"  # nothing swapped
    assert (await _search(pipeline, "北京", top_k=3)).hits

    # Writes while no reindex runs, and a restart in between, are still journaled.
    await pipeline.ingest([Document(id="gap-1", title="间隙", text="中断之后写入的第一篇。")])
    await pipeline.close()
    pipeline = await open_knowledge_base(settings, HashingEncoder(), tokenizer=tokenizer)
    try:
        await pipeline.ingest([Document(id="gap-2", title="重启", text="重启之后写入的第二篇。")])
        await pipeline.delete(["p0"])

        report = await reindex(pipeline, target, settings=settings, spec="hash-32", batch=4)
        assert report.target == checkpoint.target and report.resumed_from == checkpoint.copied
        # Only the rows after the checkpoint were copied again; the writes came by replay.
        assert report.copied + checkpoint.copied == total
        assert report.replayed_documents >= 3
        live = _live(pipeline)
        assert report.rows == await live.count() == total - 1 + 2  # p0 had one chunk; gap-1, gap-2
        assert {c.doc_id for c in await live.chunks(["gap-1", "gap-2", "p0"])} == {"gap-1", "gap-2"}
        assert pipeline.encoder is target
    finally:
        await pipeline.close()

    # Started with the old model, the service refuses and says how to get going again.
    with pytest.raises(ModelMismatch, match=r"reindex --rollback") as refused:
        await open_knowledge_base(settings, HashingEncoder(), tokenizer=tokenizer)
    assert "hash-32" in str(refused.value)

    pipeline = await open_knowledge_base(
        settings, encoder=HashingEncoder(dim=32, model_id="hash-32"), tokenizer=tokenizer
    )
    try:
        back = await rollback(pipeline, HashingEncoder(), settings=settings)
        assert back.active == "kb_chunks" and back.replayed_documents == 0  # no write since the swap
        assert await pipeline.store.count() == total + 1
        with pytest.raises(ModelMismatch):
            await rollback(pipeline, HashingEncoder(dim=48, model_id="other"), settings=settings)
        assert _live(pipeline).collection == "kb_chunks"
    finally:
        await pipeline.close()


async def test_abandoned_reindex_drops_its_target_and_rollback_needs_a_swap(
    settings: Settings, tokenizer: JiebaTokenizer
) -> None:
    pipeline = await open_knowledge_base(settings, HashingEncoder(), tokenizer=tokenizer)
    try:
        await pipeline.ingest([Document(id=f"d{i}", text=f"第{i}篇文档的内容。") for i in range(12)])
        with pytest.raises(NoPreviousCollection):
            await rollback(pipeline, HashingEncoder(), settings=settings)

        def stop_early(done: int, _: int) -> None:
            job.cancel()

        job = asyncio.create_task(
            reindex(
                pipeline,
                HashingEncoder(16, "hash-16"),
                settings=settings,
                spec="a",
                on_progress=stop_early,
                batch=4,
            )
        )
        with pytest.raises(asyncio.CancelledError):
            await job
        first = Checkpoint.load(ReindexPaths.for_settings(settings).checkpoint)
        assert first is not None
        started = _store(settings, first.target)
        try:
            assert await started.exists()
        finally:
            await started.close()

        report = await reindex(pipeline, HashingEncoder(8, "hash-8"), settings=settings, spec="b")
        assert report.resumed_from == 0 and report.copied == 12 and report.target != first.target
        gone = _store(settings, first.target)
        try:
            assert not await gone.exists()
        finally:
            await gone.close()
    finally:
        await pipeline.close()


@pytest.mark.unit
async def test_file_pointer_swaps_atomically_and_keeps_history(tmp_path: Path) -> None:
    pointer = FilePointer(tmp_path / "collections" / "kb.json", "kb")
    assert (await pointer.active(), await pointer.previous()) == ("kb", None)
    assert await pointer.swap("kb__local__20250101T000000", spec="local") == "kb"
    assert (
        await pointer.swap("kb__ollama_m__20250102T000000", spec="ollama/m") == "kb__local__20250101T000000"
    )
    state = await pointer.state()
    assert (state.active, state.previous) == ("kb__ollama_m__20250102T000000", "kb__local__20250101T000000")
    assert state.spec_of("kb__local__20250101T000000") == "local" and state.spec_of("kb") is None
    assert [p.name for p in pointer.path.parent.iterdir()] == ["kb.json"]  # no temporary left behind
    assert json.loads(pointer.path.read_text())["history"][-1]["spec"] == "ollama/m"
    with pytest.raises(ValueError, match="collection name"):
        await pointer.swap("kb-bad name")
    pointer.path.write_text("{not json")
    with pytest.raises(PointerError):
        await pointer.active()


@pytest.mark.unit
async def test_encoder_specs_and_collection_names(settings: Settings) -> None:
    assert parse_spec("local") == ("local", "int8") and parse_spec("local-fp32") == ("local", "fp32")
    assert parse_spec("ollama/qwen3-embedding:0.6b") == ("ollama", "qwen3-embedding:0.6b")
    for bad in ("", "ollama/", "cohere/x", "local-int4"):
        with pytest.raises(ValueError, match="encoder spec"):
            parse_spec(bad)
    name = collection_name("kb_chunks", "ollama/qwen3-embedding:0.6b")
    assert name.startswith("kb_chunks__ollama_qwen3_embedding_0_6b__")
    assert name.replace("_", "").isalnum()
    env = {"EMBEDDING_API_URL": "http://127.0.0.1:9", "EMBEDDING_API_DIM": "7", "EMBEDDING_API_MODEL": "a"}
    encoder = encoder_from_spec("openai/text-embedding-3-large", settings, env)
    try:
        assert encoder.model_id == "openai/text-embedding-3-large"
        assert isinstance(encoder, RemoteEncoder) and encoder.config.base_url == "http://127.0.0.1:9"
        assert encoder.config.dim is None  # EMBEDDING_API_DIM belongs to the configured model "a"
    finally:
        await encoder.close()
    assert pointer_for(settings).path == settings.data.dir / "collections" / "kb_chunks.json"  # type: ignore[union-attr]
