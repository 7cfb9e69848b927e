"""The knowledge base over real Milvus Lite: ingest, search, delete, restart, BM25 exactness, model guard."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from rank_bm25 import BM25Okapi

from retrieval.documents import Document
from retrieval.engine import Engine, ingest_fixture_file
from retrieval.errors import ModelMismatch
from retrieval.knowledge_base import LEGACY_ANALYSIS, index_text
from retrieval.settings import Settings
from retrieval.sparse.bm25 import Bm25Statistics
from retrieval.text import ANALYSIS
from retrieval.types import SearchFilter, SearchMode
from tests.conftest import HashingEncoder, open_test_engine, search

pytestmark = pytest.mark.integration


def _exact(settings: Settings) -> Settings:
    # Drift tolerance 0: every write re-weights, so stored vectors always match the live avgdl.
    return dataclasses.replace(settings, sparse=dataclasses.replace(settings.sparse, reweight_drift=0.0))


async def _open(settings: Settings, encoder: HashingEncoder | None = None) -> Engine:
    return await open_test_engine(settings, encoder)


def _docs(paragraphs: list[str], start: int, n: int) -> list[Document]:
    return [
        Document(id=f"p{i}", title=f"段落{i}", text=paragraphs[i], kind="lore")
        for i in range(start, start + n)
    ]


async def test_ingest_search_delete_search(settings: Settings) -> None:
    engine = await _open(settings)
    try:
        docs = [
            Document(
                id="char-1", title="沈青崖", kind="character", text="沈青崖是玄霜城的剑客，使一柄断剑。"
            ),
            Document(id="loc-1", title="玄霜城", kind="location", text="玄霜城位于北境，终年积雪。"),
            Document(id="item-1", title="断剑", kind="item", text="断剑名为听雪，剑身断为两截。"),
        ]
        report = await engine.kb.ingest(docs)
        assert (report.documents, report.chunks) == (3, 3)
        for mode in SearchMode:
            outcome = await search(engine, "沈青崖", mode=mode, top_k=3)
            assert outcome.hits[0].doc_id == "char-1", mode
        filtered = await search(engine, "沈青崖", where=SearchFilter.build(kinds="location"))
        assert {h.kind for h in filtered.hits} == {"location"}

        deleted = await engine.kb.delete(["char-1"])
        assert deleted.removed_chunks == 1
        after = await search(engine, "沈青崖", top_k=10)
        assert "char-1" not in {h.doc_id for h in after.hits}
        assert engine.kb.stats.n_docs == 2
        assert await engine.kb.store.count() == 2
    finally:
        await engine.close()


async def test_reingest_replaces_chunks_and_statistics(
    settings: Settings, cmrc_paragraphs: list[str]
) -> None:
    engine = await _open(settings)
    try:
        long_doc = Document(id="d1", title="长文", text=cmrc_paragraphs[0] + cmrc_paragraphs[1])
        first = await engine.kb.ingest([long_doc])
        assert first.chunks > 2
        short = dataclasses.replace(long_doc, text="只剩一句。")
        second = await engine.kb.ingest([short])
        assert (second.chunks, second.removed_chunks) == (1, first.chunks - 1)
        assert await engine.kb.store.count() == 1 and engine.kb.stats.n_docs == 1
        again = await engine.kb.ingest([short])
        assert (again.chunks, again.removed_chunks) == (1, 0)
        expected_terms = set(engine.kb.sparse.tokenizer.tokenize(index_text("长文", "只剩一句。", (), 2)))
        assert engine.kb.stats.n_docs == 1 and set(engine.kb.stats.df) == expected_terms
    finally:
        await engine.close()


async def test_milvus_sparse_scores_equal_rank_bm25_across_upserts_and_deletes(
    settings: Settings, cmrc_paragraphs: list[str]
) -> None:
    engine = await _open(_exact(settings))
    try:
        await engine.kb.ingest(_docs(cmrc_paragraphs, 0, 120), chunk=False)
        # Upsert: replace 20 documents with other text, add 30 new ones, delete 25.
        replaced = [
            dataclasses.replace(d, text=cmrc_paragraphs[300 + n])
            for n, d in enumerate(_docs(cmrc_paragraphs, 0, 20))
        ]
        await engine.kb.ingest(replaced, chunk=False)
        await engine.kb.ingest(_docs(cmrc_paragraphs, 120, 30), chunk=False)
        await engine.kb.delete([f"p{i}" for i in range(40, 65)])

        live = {
            f"p{i}": (cmrc_paragraphs[300 + i] if i < 20 else cmrc_paragraphs[i])
            for i in range(150)
            if not 40 <= i < 65
        }
        ids = sorted(live)
        tok = engine.kb.sparse.tokenizer
        corpus = [tok.tokenize(index_text(f"段落{i[1:]}", live[i], (), 2)) for i in ids]
        oracle = BM25Okapi(corpus)
        assert engine.kb.stats.n_docs == len(ids)
        assert engine.kb.stats.total_len == sum(len(c) for c in corpus)

        for query in [
            "战国无双3是由哪两个公司合作开发的",
            "铁路 全长 公里",
            "电视剧的导演是谁",
            "铁路 铁路 铁路",
        ]:
            expected = dict(zip(ids, oracle.get_scores(tok.tokenize(query)), strict=True))
            retrieved = await engine.kb.retrieve(
                tok.tokenize(query), None, mode=SearchMode.SPARSE, depth=100, where=SearchFilter()
            )
            hits = retrieved.ranked["sparse"]
            assert hits, query
            for hit in hits:
                # Milvus computes in float32.
                assert hit.score == pytest.approx(expected[hit.doc_id], rel=1e-5), (query, hit.doc_id)
            best = max(expected, key=lambda k: expected[k])
            assert hits[0].doc_id == best or expected[hits[0].doc_id] == pytest.approx(
                expected[best], rel=1e-5
            )
    finally:
        await engine.close()


async def test_data_and_statistics_survive_a_restart(settings: Settings, cmrc_paragraphs: list[str]) -> None:
    engine = await _open(settings)
    await engine.kb.ingest(_docs(cmrc_paragraphs, 0, 30))
    before = await search(engine, "广茂铁路全长多少公里", top_k=5)
    stats = engine.kb.stats
    await engine.close()

    reopened = await _open(settings)
    try:
        after = await search(reopened, "广茂铁路全长多少公里", top_k=5)
        assert [h.id for h in after.hits] == [h.id for h in before.hits]
        assert (reopened.kb.stats.n_docs, reopened.kb.stats.df, reopened.kb.stats.vocab) == (
            stats.n_docs,
            stats.df,
            stats.vocab,
        )
    finally:
        await reopened.close()

    # Without the snapshot the statistics are recounted from the store, identically.
    assert settings.data.dir.exists()
    snapshot = settings.data.dir / "bm25" / f"{settings.store.collection}.json"
    snapshot.unlink()
    rebuilt = await _open(settings)
    try:
        assert (rebuilt.kb.stats.n_docs, rebuilt.kb.stats.total_len, rebuilt.kb.stats.df) == (
            stats.n_docs,
            stats.total_len,
            stats.df,
        )
        assert all(rebuilt.kb.stats.vocab[t] == stats.vocab[t] for t in rebuilt.kb.stats.df)
        again = await search(rebuilt, "广茂铁路全长多少公里", top_k=5)
        assert [h.id for h in again.hits] == [h.id for h in before.hits]
    finally:
        await rebuilt.close()


async def test_dirty_marker_forces_a_recount(settings: Settings, cmrc_paragraphs: list[str]) -> None:
    engine = await _open(settings)
    await engine.kb.ingest(_docs(cmrc_paragraphs, 0, 5))
    snapshot = engine.kb.config.stats_path
    assert snapshot is not None
    stale = json.loads(snapshot.read_text())
    await engine.kb.ingest(_docs(cmrc_paragraphs, 5, 5))
    truth = (engine.kb.stats.n_docs, engine.kb.stats.total_len, dict(engine.kb.stats.df))
    await engine.close()
    # A crash between the store write and the snapshot: the old snapshot, made to look current,
    # plus the dirty marker written before the store was touched.
    stale["tag"] = f"test-hashing:{truth[0]}"
    stale["n_docs"] = truth[0]
    snapshot.write_text(json.dumps(stale, ensure_ascii=False))
    snapshot.with_suffix(".dirty").touch()
    recovered = await _open(settings)
    try:
        assert (recovered.kb.stats.n_docs, recovered.kb.stats.total_len, recovered.kb.stats.df) == truth
        assert not snapshot.with_suffix(".dirty").exists()
    finally:
        await recovered.close()


async def test_collection_of_another_model_is_refused(settings: Settings) -> None:
    engine = await _open(settings, HashingEncoder(dim=64, model_id="model-a"))
    await engine.kb.ingest([Document(id="x", text="内容。")])
    await engine.close()
    for other in (HashingEncoder(dim=64, model_id="model-b"), HashingEncoder(dim=32, model_id="model-a")):
        with pytest.raises(ModelMismatch, match="reindex"):
            await _open(settings, other)


@pytest.mark.unit
def test_index_text_prefixes_title_and_aliases() -> None:
    assert index_text("标题", "正文") == "标题\n正文"
    assert index_text("", "正文") == "正文"
    assert (
        index_text("沈青崖", "正文", ("断剑客", "青崖"), 2)
        == "沈青崖（断剑客、青崖）\n沈青崖（断剑客、青崖）\n正文"
    )


async def test_ivf_flat_index_on_lite(settings: Settings) -> None:
    ivf = dataclasses.replace(
        settings, store=dataclasses.replace(settings.store, lite_index="IVF_FLAT", ivf_nlist=16)
    )
    engine = await _open(ivf)
    try:
        docs = [
            Document(id=f"d{i}", title=f"条目{i}", text=f"第{i}条记录，关于玄霜城的往事。") for i in range(50)
        ]
        await engine.kb.ingest(docs)
        outcome = await search(engine, "条目7", mode=SearchMode.DENSE, top_k=5)
        assert outcome.hits and len(outcome.hits) == 5
    finally:
        await engine.close()


async def test_a_collection_indexed_before_folding_is_flagged_and_fixtures_are_ingested_again(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fixtures = tmp_path / "kb.jsonl"
    fixtures.write_text(
        json.dumps({"id": "char-1", "title": "顾青梧", "kind": "character", "text": "顾青梧是照影峰的弟子。"})
        + "\n",
        encoding="utf-8",
    )
    settings = dataclasses.replace(settings, data=dataclasses.replace(settings.data, fixtures=fixtures))
    engine = await _open(settings)
    assert await ingest_fixture_file(engine.kb, settings) == 1
    snapshot = engine.kb.config.stats_path
    assert snapshot is not None and engine.kb.indexed_analysis == ANALYSIS
    await engine.close()
    # What a store written before folding looks like: its snapshot records no analysis.
    legacy = json.loads(snapshot.read_text())
    del legacy["analysis"]
    snapshot.write_text(json.dumps(legacy, ensure_ascii=False))
    marker = snapshot.with_suffix(".fixtures.sha256")
    marker.write_text(marker.read_text().split()[0])  # and its fixture marker the file digest alone

    with caplog.at_level(logging.WARNING, logger="retrieval.knowledge_base"):
        reopened = await _open(settings)
    try:
        assert reopened.kb.indexed_analysis == LEGACY_ANALYSIS
        assert "indexed under text analysis 'nfkc-lower'" in caplog.text
        # The fixtures are the whole collection: ingesting them again makes all of it current.
        assert await ingest_fixture_file(reopened.kb, settings) == 1
        assert reopened.kb.indexed_analysis == ANALYSIS
        assert Bm25Statistics.recorded_analysis(snapshot) == ANALYSIS
        assert await ingest_fixture_file(reopened.kb, settings) == 0  # and not again after that
    finally:
        await reopened.close()
