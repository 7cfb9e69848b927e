"""The pipeline over real Milvus Lite: ingest, search, delete, restart, BM25 exactness, model guard."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from retrieval.documents import Document
from retrieval.engine import open_pipeline
from retrieval.errors import ModelMismatch
from retrieval.pipeline import SearchPipeline, index_text
from retrieval.routing.classifier import TrainConfig, train_ensemble
from retrieval.routing.features import QueryFeatures
from retrieval.routing.router import Router, parse_routing_table
from retrieval.settings import Settings
from retrieval.types import SearchFilter, SearchMode
from tests.conftest import HashingEncoder

pytestmark = pytest.mark.integration


def _exact(settings: Settings) -> Settings:
    # Drift tolerance 0: every write re-weights, so stored vectors always match the live avgdl.
    return dataclasses.replace(settings, sparse=dataclasses.replace(settings.sparse, reweight_drift=0.0))


async def _open(settings: Settings, encoder: HashingEncoder | None = None) -> SearchPipeline:
    return await open_pipeline(settings, encoder=encoder or HashingEncoder())


def _docs(paragraphs: list[str], start: int, n: int) -> list[Document]:
    return [
        Document(id=f"p{i}", title=f"段落{i}", text=paragraphs[i], kind="lore")
        for i in range(start, start + n)
    ]


async def test_ingest_search_delete_search(settings: Settings) -> None:
    pipeline = await _open(settings)
    try:
        docs = [
            Document(
                id="char-1", title="沈青崖", kind="character", text="沈青崖是玄霜城的剑客，使一柄断剑。"
            ),
            Document(id="loc-1", title="玄霜城", kind="location", text="玄霜城位于北境，终年积雪。"),
            Document(id="item-1", title="断剑", kind="item", text="断剑名为听雪，剑身断为两截。"),
        ]
        report = await pipeline.ingest(docs)
        assert (report.documents, report.chunks) == (3, 3)
        for mode in SearchMode:
            outcome = await pipeline.search("沈青崖", mode=mode, top_k=3)
            assert outcome.hits[0].hit.doc_id == "char-1", mode
        filtered = await pipeline.search("沈青崖", where=SearchFilter.build(kinds="location"))
        assert {h.hit.kind for h in filtered.hits} == {"location"}

        deleted = await pipeline.delete(["char-1"])
        assert deleted.removed_chunks == 1
        after = await pipeline.search("沈青崖", top_k=10)
        assert "char-1" not in {h.hit.doc_id for h in after.hits}
        assert pipeline.stats.n_docs == 2
        assert await pipeline.store.count() == 2
    finally:
        await pipeline.close()


async def test_reingest_replaces_chunks_and_statistics(
    settings: Settings, cmrc_paragraphs: list[str]
) -> None:
    pipeline = await _open(settings)
    try:
        long_doc = Document(id="d1", title="长文", text=cmrc_paragraphs[0] + cmrc_paragraphs[1])
        first = await pipeline.ingest([long_doc])
        assert first.chunks > 2
        short = dataclasses.replace(long_doc, text="只剩一句。")
        second = await pipeline.ingest([short])
        assert (second.chunks, second.removed_chunks) == (1, first.chunks - 1)
        assert await pipeline.store.count() == 1 and pipeline.stats.n_docs == 1
        again = await pipeline.ingest([short])
        assert (again.chunks, again.removed_chunks) == (1, 0)
        expected_terms = set(pipeline.sparse.tokenizer.tokenize(index_text("长文", "只剩一句。", (), 2)))
        assert pipeline.stats.n_docs == 1 and set(pipeline.stats.df) == expected_terms
    finally:
        await pipeline.close()


async def test_milvus_sparse_scores_equal_rank_bm25_across_upserts_and_deletes(
    settings: Settings, cmrc_paragraphs: list[str]
) -> None:
    pipeline = await _open(_exact(settings))
    try:
        await pipeline.ingest(_docs(cmrc_paragraphs, 0, 120), chunk=False)
        # Upsert: replace 20 documents with other text, add 30 new ones, delete 25.
        replaced = [
            dataclasses.replace(d, text=cmrc_paragraphs[300 + n])
            for n, d in enumerate(_docs(cmrc_paragraphs, 0, 20))
        ]
        await pipeline.ingest(replaced, chunk=False)
        await pipeline.ingest(_docs(cmrc_paragraphs, 120, 30), chunk=False)
        await pipeline.delete([f"p{i}" for i in range(40, 65)])

        live = {
            f"p{i}": (cmrc_paragraphs[300 + i] if i < 20 else cmrc_paragraphs[i])
            for i in range(150)
            if not 40 <= i < 65
        }
        ids = sorted(live)
        tok = pipeline.sparse.tokenizer
        corpus = [tok.tokenize(index_text(f"段落{i[1:]}", live[i], (), 2)) for i in ids]
        oracle = BM25Okapi(corpus)
        assert pipeline.stats.n_docs == len(ids)
        assert pipeline.stats.total_len == sum(len(c) for c in corpus)

        for query in [
            "战国无双3是由哪两个公司合作开发的",
            "铁路 全长 公里",
            "电视剧的导演是谁",
            "铁路 铁路 铁路",
        ]:
            expected = dict(zip(ids, oracle.get_scores(tok.tokenize(query)), strict=True))
            outcome = await pipeline.search(query, mode=SearchMode.SPARSE, top_k=100, candidates=100)
            assert outcome.hits, query
            for hit in outcome.hits:
                got = hit.sources["sparse"].score
                # Milvus computes in float32.
                assert got == pytest.approx(expected[hit.hit.doc_id], rel=1e-5), (query, hit.hit.doc_id)
            best = max(expected, key=lambda k: expected[k])
            assert outcome.hits[0].hit.doc_id == best or expected[
                outcome.hits[0].hit.doc_id
            ] == pytest.approx(expected[best], rel=1e-5)
    finally:
        await pipeline.close()


async def test_data_and_statistics_survive_a_restart(settings: Settings, cmrc_paragraphs: list[str]) -> None:
    pipeline = await _open(settings)
    await pipeline.ingest(_docs(cmrc_paragraphs, 0, 30))
    before = await pipeline.search("广茂铁路全长多少公里", top_k=5)
    stats = pipeline.stats
    await pipeline.close()

    reopened = await _open(settings)
    try:
        after = await reopened.search("广茂铁路全长多少公里", top_k=5)
        assert [h.hit.id for h in after.hits] == [h.hit.id for h in before.hits]
        assert (reopened.stats.n_docs, reopened.stats.df, reopened.stats.vocab) == (
            stats.n_docs,
            stats.df,
            stats.vocab,
        )
    finally:
        await reopened.close()

    # Without the snapshot the statistics are recounted from the store, identically.
    assert settings.service.data_dir.exists()
    snapshot = settings.service.data_dir / "bm25" / f"{settings.store.collection}.json"
    snapshot.unlink()
    rebuilt = await _open(settings)
    try:
        assert (rebuilt.stats.n_docs, rebuilt.stats.total_len, rebuilt.stats.df) == (
            stats.n_docs,
            stats.total_len,
            stats.df,
        )
        assert all(rebuilt.stats.vocab[t] == stats.vocab[t] for t in rebuilt.stats.df)
        again = await rebuilt.search("广茂铁路全长多少公里", top_k=5)
        assert [h.hit.id for h in again.hits] == [h.hit.id for h in before.hits]
    finally:
        await rebuilt.close()


async def test_dirty_marker_forces_a_recount(settings: Settings, cmrc_paragraphs: list[str]) -> None:
    pipeline = await _open(settings)
    await pipeline.ingest(_docs(cmrc_paragraphs, 0, 5))
    snapshot = pipeline.config.stats_path
    assert snapshot is not None
    stale = json.loads(snapshot.read_text())
    await pipeline.ingest(_docs(cmrc_paragraphs, 5, 5))
    truth = (pipeline.stats.n_docs, pipeline.stats.total_len, dict(pipeline.stats.df))
    await pipeline.close()
    # A crash between the store write and the snapshot: the old snapshot, made to look current,
    # plus the dirty marker written before the store was touched.
    stale["tag"] = f"test-hashing:{truth[0]}"
    stale["n_docs"] = truth[0]
    snapshot.write_text(json.dumps(stale, ensure_ascii=False))
    snapshot.with_suffix(".dirty").touch()
    recovered = await _open(settings)
    try:
        assert (recovered.stats.n_docs, recovered.stats.total_len, recovered.stats.df) == truth
        assert not snapshot.with_suffix(".dirty").exists()
    finally:
        await recovered.close()


async def test_collection_of_another_model_is_refused(settings: Settings) -> None:
    pipeline = await _open(settings, HashingEncoder(dim=64, model_id="model-a"))
    await pipeline.ingest([Document(id="x", text="内容。")])
    await pipeline.close()
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
    pipeline = await _open(ivf)
    try:
        docs = [
            Document(id=f"d{i}", title=f"条目{i}", text=f"第{i}条记录，关于玄霜城的往事。") for i in range(50)
        ]
        await pipeline.ingest(docs)
        outcome = await pipeline.search("条目7", mode=SearchMode.DENSE, top_k=5)
        assert outcome.hits and len(outcome.hits) == 5
    finally:
        await pipeline.close()


async def test_routing_reads_the_query_text_the_pipeline_hands_over(settings: Settings) -> None:
    # A head that only the text can inform (random training vectors): the intent is the KB kind
    # of the name in the query. If the pipeline routed on the vector alone, this would raise.
    encoder = HashingEncoder()
    names = {"沈青崖": "character", "顾长庚": "character", "玄霜宫": "faction", "天机观": "faction"}
    features = QueryFeatures.from_names(list(names), list(names.values()), buckets=0)
    texts = [
        f.format(n) for n in ("沈青崖", "玄霜宫") for f in ("介绍一下{}", "说说{}", "{}的情况", "关于{}")
    ]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(texts), encoder.dim)).astype(np.float32)
    head = train_ensemble(
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
        np.repeat([0, 1], 4),
        ["character", "faction"],
        model_id=encoder.model_id,
        config=TrainConfig(epochs=200),
        members=1,
        val_fraction=0.0,
        features=features,
        texts_labelled=texts,
    ).classifier
    table = parse_routing_table(
        {"routing": {"threshold": 0.0}, "intents": {"character": {}, "faction": {"boost": {"faction": 2.0}}}}
    )
    pipeline = await _open(settings, encoder)
    try:
        pipeline.router = Router(table, head)
        await pipeline.ingest(
            [
                Document(id="f1", title="天机观", kind="faction", text="天机观以推演天机著称。"),
                Document(id="c1", title="顾长庚", kind="character", text="顾长庚是照影峰峰主。"),
            ]
        )
        faction = await pipeline.search("说说天机观", top_k=2)
        character = await pipeline.search("说说顾长庚", top_k=2)
        assert faction.route is not None and faction.route.intent == "faction"
        assert character.route is not None and character.route.intent == "character"
    finally:
        await pipeline.close()
