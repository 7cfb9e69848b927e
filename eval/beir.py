"""Datasets in the BEIR folder layout: reading, writing and fingerprinting them.

A dataset folder holds::

    corpus.jsonl       {"_id", "title", "text", optional "kind", "aliases", "metadata"}
    queries.jsonl      {"_id", "text", optional labels "intent", "kind", "style"}
    qrels/<split>.tsv  query-id <TAB> corpus-id <TAB> score   (header line optional)

Relevance is graded (any integer); a score of 0 or less means judged not relevant. Only queries
with at least one relevant document are evaluated, as in BEIR.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL_FIELDS: tuple[str, ...] = ("intent", "kind", "style")
"""Query fields the quality report breaks metrics down by, when a dataset carries them."""

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"

Qrels = dict[str, dict[str, int]]
"""query id -> corpus id -> graded relevance."""


class DatasetError(ValueError):
    """A dataset folder that is missing files or holds malformed lines."""


@dataclass(frozen=True)
class CorpusDoc:
    """One corpus entry as BEIR stores it; `extra` keeps optional fields (aliases, metadata)."""

    id: str
    text: str
    title: str = ""
    kind: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The corpus.jsonl object for this document."""
        out: dict[str, Any] = {"_id": self.id, "title": self.title, "text": self.text}
        if self.kind is not None:
            out["kind"] = self.kind
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Query:
    """One query and its optional labels (intent, kind, style)."""

    id: str
    text: str
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The queries.jsonl object for this query."""
        return {"_id": self.id, "text": self.text, **self.labels}


@dataclass(frozen=True)
class BeirDataset:
    """A loaded dataset. `warnings` lists tolerated oddities (qrels for unknown queries...)."""

    root: Path
    corpus: dict[str, CorpusDoc]
    queries: dict[str, Query]
    qrels: Qrels
    split: str = "test"
    warnings: tuple[str, ...] = ()

    def judged_queries(self) -> list[Query]:
        """Queries with at least one relevant document, in file order (the ones evaluated)."""
        return [
            q for q in self.queries.values() if any(score > 0 for score in self.qrels.get(q.id, {}).values())
        ]

    def label_fields(self) -> list[str]:
        """Which of LABEL_FIELDS at least one query carries."""
        return [f for f in LABEL_FIELDS if any(f in q.labels for q in self.queries.values())]


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(obj, dict) or "_id" not in obj:
                raise DatasetError(f"{path}:{number}: expected an object with an `_id`")
            yield number, obj


def _read_corpus(path: Path) -> dict[str, CorpusDoc]:
    corpus: dict[str, CorpusDoc] = {}
    for number, obj in _read_jsonl(path):
        doc_id = str(obj["_id"])
        if doc_id in corpus:
            raise DatasetError(f"{path}:{number}: duplicate corpus id {doc_id!r}")
        kind = obj.get("kind")
        extra = {k: v for k, v in obj.items() if k not in {"_id", "title", "text", "kind"}}
        corpus[doc_id] = CorpusDoc(
            id=doc_id,
            text=str(obj.get("text") or ""),
            title=str(obj.get("title") or ""),
            kind=None if kind is None else str(kind),
            extra=extra,
        )
    return corpus


def _read_queries(path: Path) -> dict[str, Query]:
    queries: dict[str, Query] = {}
    for number, obj in _read_jsonl(path):
        query_id = str(obj["_id"])
        if query_id in queries:
            raise DatasetError(f"{path}:{number}: duplicate query id {query_id!r}")
        labels = {f: str(obj[f]) for f in LABEL_FIELDS if obj.get(f) not in (None, "")}
        queries[query_id] = Query(query_id, str(obj.get("text") or ""), labels)
    return queries


def read_qrels(path: Path) -> Qrels:
    """A qrels TSV (`query-id corpus-id score`, header optional) as nested dicts."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise DatasetError(f"{path}:{number}: expected 3 tab-separated columns, got {len(parts)}")
            query_id, doc_id, raw = parts
            try:
                score = int(raw)
            except ValueError as exc:
                if number == 1:  # the BEIR header line "query-id corpus-id score"
                    continue
                raise DatasetError(f"{path}:{number}: relevance {raw!r} is not an integer") from exc
            qrels.setdefault(query_id, {})[doc_id] = score
    return qrels


def load_beir(root: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder; raises DatasetError on missing files or malformed lines."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    corpus = _read_corpus(root / CORPUS_FILE)
    queries = _read_queries(root / QUERIES_FILE)
    qrels = read_qrels(root / QRELS_DIR / f"{split}.tsv")
    warnings: list[str] = []
    unknown_queries = sorted(set(qrels) - set(queries))
    if unknown_queries:
        warnings.append(f"{len(unknown_queries)} qrels query ids are not in queries.jsonl (ignored)")
        for query_id in unknown_queries:
            del qrels[query_id]
    unknown_docs = {d for judged in qrels.values() for d in judged if d not in corpus}
    if unknown_docs:
        # Kept: they lower recall exactly as a real missing document would.
        warnings.append(f"{len(unknown_docs)} judged corpus ids are not in corpus.jsonl")
    return BeirDataset(root, corpus, queries, qrels, split, tuple(warnings))


def _write_if_changed(path: Path, content: str) -> None:
    # Unchanged files keep their mtime, so re-running a converter is a no-op for anything watching.
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


def write_beir(
    root: Path,
    corpus: Iterable[CorpusDoc],
    queries: Iterable[Query],
    qrels: Mapping[str, Mapping[str, int]],
    split: str = "test",
) -> None:
    """Write a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv with a header)."""
    corpus_text = "".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in corpus)
    queries_text = "".join(json.dumps(q.to_json(), ensure_ascii=False) + "\n" for q in queries)
    rows = ["query-id\tcorpus-id\tscore\n"]
    for query_id, judged in qrels.items():
        rows.extend(f"{query_id}\t{doc_id}\t{score}\n" for doc_id, score in judged.items())
    _write_if_changed(root / CORPUS_FILE, corpus_text)
    _write_if_changed(root / QUERIES_FILE, queries_text)
    _write_if_changed(root / QRELS_DIR / f"{split}.tsv", "".join(rows))


def files_digest(paths: Iterable[Path]) -> str:
    """sha256 over the names and bytes of files, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def corpus_digest(root: Path) -> str:
    """Fingerprint of the corpus alone (what an ingested collection depends on)."""
    return files_digest([root / CORPUS_FILE])


def dataset_digest(root: Path, split: str = "test") -> str:
    """Fingerprint of corpus, queries and qrels (what a quality result depends on)."""
    return files_digest([root / CORPUS_FILE, root / QUERIES_FILE, root / QRELS_DIR / f"{split}.tsv"])
