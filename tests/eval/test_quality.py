"""A quality run end to end: real pipeline over Milvus Lite, the fast hashing encoder injected."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from eval.beir import CorpusDoc, DatasetError, Query, load_beir, write_beir
from eval.metrics import read_trec
from eval.quality import (
    QualityConfig,
    StoreIds,
    collection_name,
    mode_query,
    parse_modes,
    run_quality,
    with_overrides,
)
from retrieval.service import SearchQuery, SearchResult, SearchService
from retrieval.settings import Settings
from tests.conftest import HashingEncoder

DOCS = [
    ("char-1", "沈青崖", "character", "沈青崖是栖霞剑宗的弟子，手持一柄断剑，人称断剑客。"),
    ("char-2", "柳听蝉", "character", "柳听蝉是照影峰的女弟子，擅长音律与轻功。"),
    ("loc-1", "玄霜城", "location", "玄霜城位于北境，终年积雪，城中多冰窖。"),
    ("loc-2", "青石镇", "location", "青石镇是霜陵州的小镇，镇上发生过一桩血案。"),
    ("item-1", "双鱼佩", "item", "双鱼佩是沈氏祖传玉佩，一分为二，各执一半。"),
    # An id the store refuses ('/' and '#'): quality must map it and give it back unchanged.
    ("lore/7#x", "承渊历", "lore", "承渊历是书中的纪年方法，以开国之年为元年。"),
]
QUERIES = [
    ("q1", "断剑客沈青崖", "character"),
    ("q2", "北境终年积雪的城", "location"),
    ("q3", "青石镇血案", "location"),
    ("q4", "沈氏祖传玉佩双鱼佩", "item"),
    ("q5", "承渊历纪年", "lore"),
]
QRELS = {
    "q1": {"char-1": 2},
    "q2": {"loc-1": 1},
    "q3": {"loc-2": 1},
    "q4": {"item-1": 1},
    "q5": {"lore/7#x": 1},
}


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    write_beir(
        root,
        [CorpusDoc(i, text, title, kind) for i, title, kind, text in DOCS],
        [Query(q, text, {"intent": intent}) for q, text, intent in QUERIES],
        QRELS,
    )
    return root


@pytest.mark.unit
def test_store_ids_keep_valid_ids_and_map_the_rest_reversibly() -> None:
    ids = StoreIds(["DEV_0-1", "doc 3/x", "文档"])
    assert ids.to_store("DEV_0-1") == "DEV_0-1"
    mapped = ids.to_store("doc 3/x")
    assert mapped != "doc 3/x" and mapped.startswith("x") and ids.to_beir(mapped) == "doc 3/x"
    assert ids.to_beir(ids.to_store("文档")) == "文档"
    assert ids.remapped == 2


@pytest.mark.unit
def test_modes_are_validated() -> None:
    assert parse_modes("bm25, hybrid,bm25") == ("bm25", "hybrid")
    with pytest.raises(ValueError, match="unknown mode"):
        parse_modes("bm25,colbert")
    assert parse_modes("hybrid,hybrid-rrf") == ("hybrid", "hybrid-rrf")


def test_hybrid_rrf_asks_for_rrf_and_hybrid_for_the_configured_fusion() -> None:
    assert mode_query("hybrid-rrf", "q", 10, cache=False).fusion == "rrf"
    assert mode_query("hybrid", "q", 10, cache=False).fusion is None


@pytest.mark.unit
def test_collection_name_follows_model_and_stored_settings(settings: Settings) -> None:
    base = collection_name("abc", "m3e-small", settings)
    assert base.startswith("beir_") and base.replace("_", "").isalnum()
    assert collection_name("abc", "m3e-small-fp32", settings) != base
    one_head = dataclasses.replace(settings, chunking=dataclasses.replace(settings.chunking, head_repeats=1))
    assert collection_name("abc", "m3e-small", one_head) != base
    # Fusion does not change what is stored, so it must not force a re-ingest.
    assert collection_name("abc", "m3e-small", with_overrides(settings, rrf_k=10, dense_weight=2.0)) == base


@pytest.mark.integration
async def test_quality_run_writes_results_and_reuses_the_collection(
    settings: Settings, tiny_beir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = QualityConfig(dataset=tiny_beir, out=out, modes=("bm25", "dense", "hybrid"), quiet=True)
    result = await run_quality(config, settings, encoder=HashingEncoder())

    for name in ("bm25.trec", "dense.trec", "hybrid.trec", "results.json", "results.md", "per_query.tsv"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "results.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert set(summary["metrics"]) == {"bm25", "dense", "hybrid"}
    for values in summary["metrics"].values():
        assert all(0.0 <= v <= 1.0 for v in values.values())
        assert values["recall@10"] >= values["mrr@10"] - 1e-9
    # Every query names its own document in distinctive words: BM25 must find each at rank 1.
    assert summary["metrics"]["bm25"]["mrr@10"] == 1.0
    assert summary["metrics"]["hybrid"]["recall@10"] == 1.0
    assert summary["dataset"]["queries_evaluated"] == 5
    assert summary["config"]["model_id"] == "test-hashing"
    assert summary["config"]["fusion"]["k"] == settings.fusion.k
    assert len(summary["dataset"]["digest"]) == 64 and "timestamp" in summary["provenance"]
    assert "commit" in summary["provenance"]["git"]
    assert summary["latency_ms"]["hybrid"]["count"] == 5
    assert set(summary["breakdown"]["intent"]) == {"character", "location", "item", "lore"}
    assert summary["breakdown"]["intent"]["location"]["queries"] == 2
    assert "hybrid" in summary["comparison"]["table"]
    assert summary["ingest"]["skipped"] is False and summary["ingest"]["documents"] == 6
    assert summary["ingest"]["ids_remapped"] == 1
    assert "| bm25 | 1.0000 |" in (out / "results.md").read_text()

    trec = read_trec(out / "bm25.trec")
    assert trec["q5"][0][0] == "lore/7#x"  # the original id, not the store's
    lines = (out / "hybrid.trec").read_text().splitlines()
    assert lines and all(len(line.split(" ")) == 6 and line.split(" ")[1] == "Q0" for line in lines)
    assert [line.split(" ")[3] for line in lines if line.startswith("q1 ")] == ["1", "2", "3", "4", "5", "6"]

    again = await run_quality(
        QualityConfig(
            dataset=tiny_beir, out=tmp_path / "again", modes=("hybrid",), limit_queries=2, quiet=True
        ),
        with_overrides(settings, rrf_k=5),
        encoder=HashingEncoder(),
    )
    assert again.summary["ingest"]["skipped"] is True
    assert again.summary["ingest"]["collection"] == summary["ingest"]["collection"]
    assert again.summary["dataset"]["queries_evaluated"] == 2
    assert again.summary["config"]["fusion"]["k"] == 5
    assert again.comparison is None


@pytest.mark.integration
async def test_ids_with_whitespace_are_refused_before_any_work(settings: Settings, tmp_path: Path) -> None:
    write_beir(tmp_path / "ds", [CorpusDoc("doc 1", "正文")], [Query("q1", "正文")], {"q1": {"doc 1": 1}})
    config = QualityConfig(dataset=tmp_path / "ds", out=tmp_path / "out", quiet=True)
    with pytest.raises(DatasetError, match="whitespace"):
        await run_quality(config, settings, encoder=HashingEncoder())


@pytest.mark.integration
async def test_routed_mode_runs_through_the_router(
    settings: Settings, tiny_beir: Path, tmp_path: Path
) -> None:
    config = QualityConfig(dataset=tiny_beir, out=tmp_path / "out", modes=("hybrid", "routed"), quiet=True)
    result = await run_quality(config, settings, encoder=HashingEncoder())
    # No head is trained for the test encoder, so every query takes the default route: routed
    # must then equal unrouted hybrid exactly.
    assert result.summary["metrics"]["routed"] == result.summary["metrics"]["hybrid"]
    assert (tmp_path / "out" / "routed.trec").exists()


@pytest.mark.integration
def test_encoder_ab_comparison(
    settings: Settings, tiny_beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eval.cli import main
    from tests.retrieval.encoders.embedding_server import EmbeddingServer

    with EmbeddingServer(dim=24, ollama_models=["emb-a", "emb-b"]) as server:
        monkeypatch.setenv("EMBEDDING_PROVIDER", "ollama")
        monkeypatch.setenv("EMBEDDING_API_URL", server.base_url)
        monkeypatch.setenv("SEARCH_DATA_DIR", str(settings.data.dir))
        out = tmp_path / "ab"
        args = ["quality", "-q", "--dataset", str(tiny_beir), "--modes", "dense,hybrid", "--out", str(out)]
        assert main([*args, "--encoder", "ollama/emb-a,ollama/emb-b"]) == 0
    table = (out / "encoders.md").read_text()
    assert "ollama/emb-a" in table and "ollama/emb-b" in table
    assert (out / "ollama_emb_a" / "results.json").exists() and (out / "ollama_emb_b" / "dense.trec").exists()


@pytest.mark.integration
async def test_quality_scores_what_the_served_search_service_answers(
    settings: Settings, tiny_beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every ranking scored comes from `SearchService.search`, the call `/v1/search` makes: record
    # what it answers and compare it with the run the evaluation wrote.
    answered: dict[str, list[str]] = {}
    served = SearchService.search

    async def recording(self: SearchService, query: SearchQuery) -> SearchResult:
        result = await served(self, query)
        answered[query.text] = [hit.doc_id for hit in result.answer.hits]
        return result

    monkeypatch.setattr(SearchService, "search", recording)
    config = QualityConfig(dataset=tiny_beir, out=tmp_path / "out", modes=("hybrid",), quiet=True)
    result = await run_quality(config, settings, encoder=HashingEncoder())
    queries = {q.id: q.text for q in load_beir(tiny_beir).judged_queries()}
    run = result.modes["hybrid"].run
    assert set(run) == set(queries)
    for query_id, ranked in run.items():
        ids = StoreIds(list(load_beir(tiny_beir).corpus))
        assert [doc for doc, _ in ranked] == [ids.to_beir(d) for d in answered[queries[query_id]]]
