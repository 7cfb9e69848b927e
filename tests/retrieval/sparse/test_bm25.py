"""BM25 sparse vectors reproduce rank-bm25's BM25Okapi scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from retrieval.sparse.bm25 import Bm25Params, Bm25Statistics, TermCounts, bm25_score
from retrieval.sparse.tokenizer import JiebaTokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    return JiebaTokenizer(["战国无双"], mode="search", cache_dir=tmp_path_factory.mktemp("jieba"))


def _stats(corpus: list[list[str]]) -> Bm25Statistics:
    stats = Bm25Statistics(Bm25Params())
    for tokens in corpus:
        stats.add(TermCounts.from_tokens(tokens))
    stats.rebase()
    return stats


@pytest.mark.unit
def test_inner_product_equals_bm25okapi_on_real_text(
    cmrc_paragraphs: list[str], tokenizer: JiebaTokenizer
) -> None:
    corpus = [tokenizer.tokenize(p) for p in cmrc_paragraphs[:300]]
    stats = _stats(corpus)
    oracle = BM25Okapi(corpus)
    doc_vectors = [stats.document_vector(TermCounts.from_tokens(toks)) for toks in corpus]
    # Queries: real questions plus tokens repeated and tokens unseen in the corpus.
    queries = [
        tokenizer.tokenize("战国无双3是由哪两个公司合作开发的"),
        tokenizer.tokenize("锣鼓 锣鼓 京剧 乐器"),
        tokenizer.tokenize("广茂铁路全长多少公里"),
        ["完全没出现过的词", *corpus[5][:3]],
    ]
    for query in queries:
        expected = oracle.get_scores(query)
        qvec = stats.query_vector(query)
        got = np.array([bm25_score(qvec, d) for d in doc_vectors])
        assert expected.max() > 0
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.unit
def test_negative_idf_floor_matches_rank_bm25() -> None:
    # "common" is in 4 of 5 documents: its raw IDF is negative and rank-bm25 floors it to
    # epsilon * mean IDF. The mean is positive here, so the floored weight survives.
    corpus = [["common", f"w{i}", f"x{i}", f"y{i}"] for i in range(4)] + [["rare", "z", "q", "r"]]
    stats = _stats(corpus)
    oracle = BM25Okapi(corpus)
    assert oracle.idf["common"] == pytest.approx(stats.idf()[stats.vocab["common"]])
    doc_vectors = [stats.document_vector(TermCounts.from_tokens(t)) for t in corpus]
    qvec = stats.query_vector(["common", "rare"])
    got = [bm25_score(qvec, d) for d in doc_vectors]
    np.testing.assert_allclose(got, oracle.get_scores(["common", "rare"]), rtol=1e-12)


@pytest.mark.unit
def test_remove_restores_statistics_and_ids_are_never_reused() -> None:
    stats = Bm25Statistics()
    a, b = TermCounts.from_tokens(["林", "山", "山"]), TermCounts.from_tokens(["海", "山"])
    stats.add(a)
    stats.add(b)
    stats.remove(a)
    assert (stats.n_docs, stats.total_len, stats.df) == (1, 2, {"海": 1, "山": 1})
    old_id = stats.vocab["林"]
    stats.add(TermCounts.from_tokens(["新词"]))
    assert stats.vocab["新词"] != old_id


@pytest.mark.unit
def test_snapshot_round_trip_and_tag_mismatch(tmp_path: Path) -> None:
    stats = _stats([["甲", "乙"], ["乙", "丙", "丙"]])
    path = tmp_path / "stats.json"
    stats.save(path, tag="m:2")
    loaded = Bm25Statistics.load(path, stats.params, tag="m:2")
    assert loaded is not None
    assert (loaded.df, loaded.vocab, loaded.next_id) == (stats.df, stats.vocab, stats.next_id)
    assert loaded.reference_avgdl == stats.reference_avgdl
    assert Bm25Statistics.load(path, stats.params, tag="m:3") is None
    assert Bm25Statistics.load(path, Bm25Params(k1=1.2), tag="m:2") is None


@pytest.mark.unit
def test_drift_after_documents_change() -> None:
    stats = _stats([["a", "b"], ["c", "d"]])
    assert stats.drift() == 0
    stats.add(TermCounts.from_tokens(["e"] * 8))
    assert stats.needs_reweight(0.05)
    stats.rebase()
    assert not stats.needs_reweight(0.0)
