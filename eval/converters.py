"""Converters into the BEIR layout: CMRC 2018 and DRCD (paragraph or chunk level), and the fixtures.

CMRC chunk level splits every paragraph with the project's own chunker, so the relevant unit is
exactly what the API would store and return; a question counts only when its answer sits whole
inside one chunk.

DRCD dev (simplified) has CMRC's layout and is split by article into a training part and a part
held aside (`drcd_part`): the held-aside articles, their chunks and their questions are never
trained or tuned on, so figures on that part are figures on unseen data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from eval.beir import LABEL_FIELDS, CorpusDoc, DatasetError, Query, read_qrels, write_beir
from retrieval.chunking import chunk_text
from retrieval.settings import PROJECT_ROOT

CMRC_DEV = PROJECT_ROOT.parent / "shared" / "data" / "cmrc2018" / "cmrc2018_dev.json"
DRCD_DEV = PROJECT_ROOT.parent / "shared" / "data" / "drcd" / "drcd_dev_simplified.json"
FIXTURES_DIR = PROJECT_ROOT / "fixtures"
REPORT_FILE = "conversion.json"

CmrcLevel = Literal["paragraph", "chunk"]
ArticlePart = Literal["all", "train", "heldout"]
HELDOUT_SHARE = 3
"""One article in HELDOUT_SHARE is held aside, chosen by a hash of its id (fixed across runs)."""
AnswerStatus = Literal["exact", "realigned", "missing", "ambiguous", "empty"]


@dataclass
class ConversionReport:
    """What a conversion kept and dropped, and why (written as conversion.json beside the data)."""

    source: str
    level: str
    corpus_docs: int = 0
    questions: int = 0
    kept: int = 0
    answer_exact: int = 0
    answer_realigned: int = 0
    """answer_start was off but the answer text occurs exactly once in the paragraph."""
    dropped_misaligned: int = 0
    """Answer text absent from the paragraph, or present several times with a wrong answer_start."""
    dropped_cut: int = 0
    """Answer span crosses a chunk boundary (chunk level only)."""
    dropped_no_answer: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def summary(self) -> str:
        """One line for the terminal."""
        if self.level == "document":
            return f"{self.corpus_docs} documents, {self.kept}/{self.questions} queries judged"
        return (
            f"{self.level}: {self.corpus_docs} documents, {self.kept}/{self.questions} questions kept "
            f"(answer realigned {self.answer_realigned}, dropped: misaligned {self.dropped_misaligned}, "
            f"cut by a chunk boundary {self.dropped_cut}, no answer {self.dropped_no_answer})"
        )


def locate_answer(context: str, answer: str, answer_start: int) -> tuple[int | None, AnswerStatus]:
    """Where `answer` starts in `context`: at `answer_start` if it is really there, else its unique
    occurrence; None when it is empty, absent, or ambiguous."""
    if not answer:
        return None, "empty"
    if answer_start >= 0 and context[answer_start : answer_start + len(answer)] == answer:
        return answer_start, "exact"
    first = context.find(answer)
    if first < 0:
        return None, "missing"
    if context.find(answer, first + 1) >= 0:
        return None, "ambiguous"
    return first, "realigned"


def _read_cmrc(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"CMRC file {path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DatasetError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path} lacks the SQuAD-style top-level `data` list")
    articles: list[dict[str, Any]] = data["data"]
    return articles


def convert_cmrc(
    source: Path,
    out: Path,
    level: CmrcLevel,
    *,
    max_chars: int = 400,
    min_chars: int = 40,
    part: ArticlePart = "all",
) -> ConversionReport:
    """Write CMRC 2018 (SQuAD format) as BEIR: paragraphs or chunks as the corpus, questions as queries.

    `part` keeps every article, or only the training or held-aside articles (`article_part`).

    Only the first answer of a question is used. At paragraph level every question is kept (its
    paragraph is relevant wherever the answer sits); at chunk level the question is kept only when
    its located answer lies whole inside one chunk, and that chunk is the single relevant document.
    """
    if level not in ("paragraph", "chunk"):
        raise ValueError(f"level must be paragraph or chunk, not {level!r}")
    report = ConversionReport(source=str(source), level=level)
    if level == "chunk":
        report.settings = {"max_chars": max_chars, "min_chars": min_chars}
    corpus: list[CorpusDoc] = []
    queries: list[Query] = []
    qrels: dict[str, dict[str, int]] = {}
    if part != "all":
        report.settings = {**report.settings, "part": part, "heldout_share": f"1/{HELDOUT_SHARE}"}
    for article in _read_cmrc(source):
        if part != "all" and article_part(str(article.get("id") or article.get("title") or "")) != part:
            continue
        title = str(article.get("title") or "")
        for paragraph in article.get("paragraphs", []):
            pid = str(paragraph["id"])
            context = str(paragraph["context"])
            chunks = chunk_text(context, max_chars, min_chars) if level == "chunk" else []
            if level == "paragraph":
                corpus.append(CorpusDoc(pid, context, title))
            else:
                corpus.extend(CorpusDoc(f"{pid}-{c.index}", c.text, title) for c in chunks)
            for qa in paragraph.get("qas", []):
                report.questions += 1
                answers = qa.get("answers") or []
                if not answers:
                    report.dropped_no_answer += 1
                    continue
                first = answers[0]
                start, status = locate_answer(
                    context, str(first.get("text", "")), int(first.get("answer_start", -1))
                )
                if status == "exact":
                    report.answer_exact += 1
                elif status == "realigned":
                    report.answer_realigned += 1
                if level == "paragraph":
                    relevant = pid
                else:
                    if start is None:
                        if status == "empty":
                            report.dropped_no_answer += 1
                        else:
                            report.dropped_misaligned += 1
                        continue
                    end = start + len(str(first["text"]))
                    holder = next((c for c in chunks if c.start <= start and end <= c.end), None)
                    if holder is None:
                        report.dropped_cut += 1
                        continue
                    relevant = f"{pid}-{holder.index}"
                qid = str(qa["id"])
                queries.append(Query(qid, str(qa["question"])))
                qrels[qid] = {relevant: 1}
                report.kept += 1
    report.corpus_docs = len(corpus)
    write_beir(out, corpus, queries, qrels)
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    return report


def article_part(article_id: str) -> ArticlePart:
    """ "heldout" for one article id in HELDOUT_SHARE (by SHA-256, so stable everywhere), else "train"."""
    digest = hashlib.sha256(article_id.encode("utf-8")).digest()
    return "heldout" if int.from_bytes(digest[:4], "big") % HELDOUT_SHARE == 0 else "train"


def _read_objects(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing (the fixtures are not written yet?)")
    objects: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object")
        objects.append(obj)
    return objects


def _object_id(obj: Mapping[str, Any], path: Path) -> str:
    value = obj.get("_id", obj.get("id"))
    if value in (None, ""):
        raise DatasetError(f"{path}: an entry has neither `_id` nor `id`")
    return str(value)


FIXTURE_VARIANTS = ("plain", "traditional", "typo", "typo-tune")
TYPO_SEEDS = {"typo": 2, "typo-tune": 1}
"""Seed of each typo set: thresholds are chosen on seed 1 (`typo-tune`); figures come from seed 2."""


def _homophones(corpus_text: str) -> dict[str, list[str]]:
    """Toneless reading -> the characters of `corpus_text` with it as their first reading."""
    from retrieval.understanding.correction import readings  # pypinyin only where typos are made

    by_sound: dict[str, set[str]] = {}
    for ch in set(corpus_text):
        if "\u4e00" <= ch <= "\u9fff":
            by_sound.setdefault(readings(ch)[0], set()).add(ch)
    return {k: sorted(v) for k, v in by_sound.items()}


def typo_query(
    text: str, names: list[str], homophones: dict[str, list[str]], rng: random.Random
) -> str | None:
    """`text` with one character of its longest name (3+ characters) swapped for a homophone.

    None when the query names nothing long enough or the swap would spell another name.
    """
    from retrieval.understanding.correction import readings

    found = sorted((n for n in names if len(n) >= 3 and n in text), key=lambda n: (-len(n), n))
    if not found:
        return None
    name = found[0]
    spots = list(range(len(name)))
    rng.shuffle(spots)
    for spot in spots:
        others = [c for c in homophones.get(readings(name[spot])[0], []) if c != name[spot]]
        if not others:
            continue
        typed = name[:spot] + rng.choice(others) + name[spot + 1 :]
        if typed not in names:
            return text.replace(name, typed, 1)
    return None


def convert_fixtures(fixtures: Path, out: Path, variant: str = "plain") -> ConversionReport:
    """Write the fixture knowledge base, its queries and graded qrels as BEIR.

    Relevance is judged per document, so the corpus is the documents themselves (title, text,
    kind, aliases, metadata) and `quality` ingests each as one chunk. `variant` rewrites the
    queries: "traditional" (OpenCC s2t), "typo"/"typo-tune" (one homophone swapped into the
    longest name of each query that has one, seeded; other queries are left out).
    """
    kb_path = fixtures / "kb.jsonl"
    queries_path = fixtures / "queries.jsonl"
    qrels_path = fixtures / "qrels" / "test.tsv"
    corpus = []
    for obj in _read_objects(kb_path):
        extra = {k: obj[k] for k in ("aliases", "metadata") if obj.get(k)}
        corpus.append(
            CorpusDoc(
                _object_id(obj, kb_path),
                str(obj.get("text") or ""),
                str(obj.get("title") or ""),
                str(obj["kind"]) if obj.get("kind") else None,
                extra,
            )
        )
    queries = [
        Query(
            _object_id(obj, queries_path),
            str(obj.get("text") or obj.get("query") or ""),
            {f: str(obj[f]) for f in LABEL_FIELDS if obj.get(f) not in (None, "")},
        )
        for obj in _read_objects(queries_path)
    ]
    qrels = read_qrels(qrels_path)
    if variant == "traditional":
        import opencc

        s2t = opencc.OpenCC("s2t")
        queries = [dataclasses.replace(q, text=s2t.convert(q.text)) for q in queries]
    elif variant in TYPO_SEEDS:
        rng = random.Random(TYPO_SEEDS[variant])
        names = sorted({n for d in corpus for n in (d.title, *d.extra.get("aliases", ())) if n})
        homophones = _homophones("".join(d.text for d in corpus))
        typed = [(q, typo_query(q.text, names, homophones, rng)) for q in queries]
        queries = [dataclasses.replace(q, text=t) for q, t in typed if t is not None]
    elif variant != "plain":
        raise DatasetError(f"unknown fixture variant {variant!r}")
    write_beir(out, corpus, queries, qrels)
    report = ConversionReport(
        source=str(fixtures) + ("" if variant == "plain" else f" ({variant})"),
        level="document",
        corpus_docs=len(corpus),
        questions=len(queries),
        kept=sum(1 for q in queries if q.id in qrels),
    )
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    return report
