"""The BEIR folder layout: reading what a user writes by hand, writing, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.beir import CorpusDoc, DatasetError, Query, corpus_digest, dataset_digest, load_beir, write_beir

pytestmark = pytest.mark.unit


def _write_tiny(root: Path) -> None:
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "沈青崖", "text": "沈青崖是剑客。", "kind": "character", "aliases": ["青崖"]},
        {"_id": "d2", "title": "玄霜城", "text": "玄霜城位于北境。"},
        {"_id": "doc 3/x", "title": "", "text": "一个带空格和斜杠的编号。"},
    ]
    queries = [
        {"_id": "q1", "text": "沈青崖是谁", "intent": "character", "style": "question"},
        {"_id": "q2", "text": "玄霜城在哪", "kind": "location"},
        {"_id": "q3", "text": "只判了不相关"},
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in corpus) + "\n\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in queries))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\tdoc 3/x\t1\nq2\td2\t1\nq3\td1\t0\nq9\td1\t1\n"
    )


def test_load_reads_corpus_queries_labels_and_graded_qrels(tmp_path: Path) -> None:
    _write_tiny(tmp_path)
    ds = load_beir(tmp_path)
    assert list(ds.corpus) == ["d1", "d2", "doc 3/x"]
    assert ds.corpus["d1"] == CorpusDoc("d1", "沈青崖是剑客。", "沈青崖", "character", {"aliases": ["青崖"]})
    assert ds.corpus["d2"].kind is None
    assert ds.queries["q1"].labels == {"intent": "character", "style": "question"}
    assert ds.qrels["q1"] == {"d1": 2, "doc 3/x": 1}
    # q3 has only a 0 judgement: not evaluated; q9 is not a known query: dropped with a warning.
    assert [q.id for q in ds.judged_queries()] == ["q1", "q2"]
    assert "q9" not in ds.qrels
    assert any("not in queries.jsonl" in w for w in ds.warnings)
    assert ds.label_fields() == ["intent", "kind", "style"]


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    corpus = [CorpusDoc("a", "正文", "标题", "lore", {"metadata": {"x": 1}}), CorpusDoc("b", "二")]
    queries = [Query("q", "问", {"intent": "lore"})]
    write_beir(tmp_path, corpus, queries, {"q": {"a": 3, "b": 0}})
    ds = load_beir(tmp_path)
    assert list(ds.corpus.values()) == corpus
    assert list(ds.queries.values()) == queries
    assert ds.qrels == {"q": {"a": 3, "b": 0}}
    assert (tmp_path / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")


def test_digests_follow_content(tmp_path: Path) -> None:
    _write_tiny(tmp_path)
    corpus_before, dataset_before = corpus_digest(tmp_path), dataset_digest(tmp_path)
    with (tmp_path / "qrels" / "test.tsv").open("a") as fh:
        fh.write("q2\td1\t1\n")
    assert corpus_digest(tmp_path) == corpus_before
    assert dataset_digest(tmp_path) != dataset_before


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("corpus.jsonl", '{"_id": "d1", "text": "x"}\nnot json\n', "corpus.jsonl:2"),
        ("corpus.jsonl", '{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n', "duplicate corpus id"),
        ("queries.jsonl", '{"text": "no id"}\n', "`_id`"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", "not an integer"),
        ("qrels/test.tsv", "q1 d1 1\n", "3 tab-separated columns"),
    ],
)
def test_malformed_files_name_the_line(tmp_path: Path, file: str, content: str, message: str) -> None:
    _write_tiny(tmp_path)
    (tmp_path / file).write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_beir(tmp_path)


def test_missing_folder_or_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nope")
    _write_tiny(tmp_path)
    (tmp_path / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl is missing"):
        load_beir(tmp_path)
