"""CMRC 2018 and fixtures into BEIR: relevance points at the chunk holding the answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.beir import DatasetError, load_beir
from eval.converters import DRCD_DEV, article_part, convert_cmrc, convert_fixtures, locate_answer
from retrieval.chunking import chunk_text
from tests.conftest import CMRC_DEV

pytestmark = pytest.mark.unit

# Two sentences of 8 characters: with max_chars=10 the chunker must split between them.
CONTEXT = "甲乙丙丁戊己庚。辛壬癸子丑寅卯。"


def _squad(path: Path, qas: list[dict[str, object]]) -> Path:
    data = {
        "data": [{"id": "A", "title": "天干", "paragraphs": [{"id": "P_0", "context": CONTEXT, "qas": qas}]}]
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _qa(qid: str, text: str, start: int) -> dict[str, object]:
    return {"id": qid, "question": f"问题{qid}", "answers": [{"text": text, "answer_start": start}]}


@pytest.mark.parametrize(
    ("answer", "start", "expected"),
    [
        ("丙丁", 2, (2, "exact")),
        ("丙丁", 5, (2, "realigned")),  # answer_start off, text found once
        ("。", 3, (None, "ambiguous")),  # off and occurring twice: cannot tell which
        ("子丑", 9, (11, "realigned")),
        ("不在", 0, (None, "missing")),
        ("", 0, (None, "empty")),
    ],
)
def test_locate_answer(answer: str, start: int, expected: tuple[int | None, str]) -> None:
    assert locate_answer(CONTEXT, answer, start) == expected


def test_chunk_level_points_at_the_answer_chunk_and_drops_cut_answers(tmp_path: Path) -> None:
    chunks = chunk_text(CONTEXT, max_chars=10, min_chars=2)
    assert [(c.start, c.end) for c in chunks] == [(0, 8), (8, 16)]
    source = _squad(
        tmp_path / "cmrc.json",
        [
            _qa("in-first", "丙丁", 2),
            _qa("in-second", "壬癸", 9),
            _qa("cut", "庚。辛壬", 6),  # spans the boundary at 8
            _qa("off", "子丑", 1),  # wrong answer_start, unique text in chunk 2
            _qa("absent", "不在此处", 0),
            {"id": "no-answer", "question": "无答案", "answers": []},
        ],
    )
    report = convert_cmrc(source, tmp_path / "chunk", "chunk", max_chars=10, min_chars=2)
    ds = load_beir(tmp_path / "chunk")
    assert list(ds.corpus) == ["P_0-0", "P_0-1"]
    assert ds.corpus["P_0-1"].text == "辛壬癸子丑寅卯。" and ds.corpus["P_0-1"].title == "天干"
    assert ds.qrels == {"in-first": {"P_0-0": 1}, "in-second": {"P_0-1": 1}, "off": {"P_0-1": 1}}
    assert (report.questions, report.kept) == (6, 3)
    assert (report.dropped_cut, report.dropped_misaligned, report.dropped_no_answer) == (1, 1, 1)
    assert report.answer_realigned == 1
    assert json.loads((tmp_path / "chunk" / "conversion.json").read_text())["dropped_cut"] == 1


def test_paragraph_level_keeps_every_question_with_an_answer(tmp_path: Path) -> None:
    source = _squad(
        tmp_path / "cmrc.json", [_qa("a", "丙丁", 2), _qa("cut", "庚。辛壬", 6), _qa("absent", "无", 0)]
    )
    report = convert_cmrc(source, tmp_path / "para", "paragraph")
    ds = load_beir(tmp_path / "para")
    assert list(ds.corpus) == ["P_0"] and ds.corpus["P_0"].text == CONTEXT
    assert ds.qrels == {"a": {"P_0": 1}, "cut": {"P_0": 1}, "absent": {"P_0": 1}}
    assert report.kept == 3


def test_real_cmrc_chunk_relevance_holds_the_first_answer(tmp_path: Path) -> None:
    report = convert_cmrc(CMRC_DEV, tmp_path / "chunk", "chunk", max_chars=400, min_chars=40)
    ds = load_beir(tmp_path / "chunk")
    raw = json.loads(CMRC_DEV.read_text(encoding="utf-8"))
    answers = {
        qa["id"]: qa["answers"][0]["text"]
        for article in raw["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }
    assert report.questions == len(answers) == 3219
    assert report.kept + report.dropped_cut + report.dropped_misaligned + report.dropped_no_answer == 3219
    assert len(ds.judged_queries()) == report.kept > 3100
    for query in ds.judged_queries()[::40]:
        (chunk_id,) = ds.qrels[query.id]
        assert answers[query.id] in ds.corpus[chunk_id].text, query.id
        # The chunk belongs to the question's own paragraph ("DEV_12_QUERY_3" -> "DEV_12-n").
        assert chunk_id.rsplit("-", 1)[0] == query.id.rsplit("_QUERY_", 1)[0]
    paragraph = convert_cmrc(CMRC_DEV, tmp_path / "para", "paragraph")
    assert (paragraph.corpus_docs, paragraph.kept) == (848, 3219)


def test_drcd_parts_split_articles_apart_and_cover_the_whole(tmp_path: Path) -> None:
    for part in ("train", "heldout", "all"):
        convert_cmrc(DRCD_DEV, tmp_path / part, "chunk", max_chars=400, min_chars=40, part=part)
    parts = {part: load_beir(tmp_path / part) for part in ("train", "heldout", "all")}
    train, heldout, whole = parts["train"], parts["heldout"], parts["all"]
    # No chunk or question of a held-aside article reaches the training part, and together they
    # are the whole set.
    assert not set(train.corpus) & set(heldout.corpus)
    assert not set(train.queries) & set(heldout.queries)
    assert set(train.corpus) | set(heldout.corpus) == set(whole.corpus)
    assert set(train.queries) | set(heldout.queries) == set(whole.queries)
    assert 0.25 < len(heldout.queries) / len(whole.queries) < 0.42
    # The split is by article id alone, so it is the same on every machine and run.
    assert article_part("1147") == article_part("1147")
    assert {article_part(str(i)) for i in range(50)} == {"train", "heldout"}


def test_fixtures_become_beir_with_kinds_and_labels(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures"
    (fixtures / "qrels").mkdir(parents=True)
    kb = [
        {
            "id": "char-1",
            "title": "沈青崖",
            "kind": "character",
            "aliases": ["青崖"],
            "text": "剑客。",
            "metadata": {"faction": "栖霞剑宗"},
        },
        {"id": "loc-1", "title": "玄霜城", "kind": "location", "text": "北境之城。"},
    ]
    queries = [{"_id": "q1", "text": "沈青崖是谁", "style": "question", "kind": "character"}]
    (fixtures / "kb.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in kb))
    (fixtures / "queries.jsonl").write_text(json.dumps(queries[0], ensure_ascii=False) + "\n")
    (fixtures / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tchar-1\t3\nq1\tloc-1\t1\n")
    report = convert_fixtures(fixtures, tmp_path / "beir")
    ds = load_beir(tmp_path / "beir")
    assert ds.corpus["char-1"].kind == "character"
    assert ds.corpus["char-1"].extra == {"aliases": ["青崖"], "metadata": {"faction": "栖霞剑宗"}}
    assert ds.queries["q1"].labels == {"kind": "character", "style": "question"}
    assert ds.qrels == {"q1": {"char-1": 3, "loc-1": 1}}
    assert (report.corpus_docs, report.kept) == (2, 1)

    (fixtures / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl is missing"):
        convert_fixtures(fixtures, tmp_path / "beir2")
