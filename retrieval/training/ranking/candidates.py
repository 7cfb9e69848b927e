"""Candidate sets for training the ranker: the served engine run over a BEIR dataset, kept on disk.

For every judged query the search service's own `candidate_lists` (an unrouted hybrid search: query
normalised, encoded once, jieba terms with their live IDF, dense and sparse top-N) is recorded as
ids and scores. Encoding a corpus costs minutes, so the sets are written to
``<data_dir>/ranking/candidates/<collection>.jsonl.gz``: the collection name is `search-eval
quality`'s fingerprint of corpus, model and every setting that shapes the stored vectors, so a
file is reused exactly when the engine would search the same collection.

The hits' text, title and aliases are rebuilt from the dataset's corpus (each entry is one chunk,
`#0`, as `quality` ingests it), so the features computed in training are the ones served.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eval.beir import BeirDataset, corpus_digest, load_beir
from eval.quality import (
    QualityConfig,
    StoreIds,
    collection_name,
    default_encoder,
    documents_of,
    eval_store_settings,
    open_ingested,
)
from retrieval.encoders.protocol import Encoder
from retrieval.ranking.features import RankingInput
from retrieval.settings import Settings
from retrieval.types import StoredHit

logger = logging.getLogger(__name__)

CANDIDATES_SCHEMA = 4
"""Bump when what a candidate file records changes."""


@dataclass(frozen=True)
class QueryCandidates:
    """One judged query: what the ranker is told, each source's (chunk id, score) list, its qrels."""

    query_id: str
    query: RankingInput
    ranked: dict[str, list[tuple[str, float]]]
    qrels: dict[str, int]
    """Corpus (BEIR) id -> grade."""
    labels: dict[str, str]
    """The query's labels in the dataset (style, kind, ...)."""


@dataclass(frozen=True)
class CandidateSet:
    """A dataset's candidate sets and the corpus to rebuild their hits from."""

    name: str
    dataset: BeirDataset
    queries: list[QueryCandidates]
    hits: dict[str, StoredHit]
    """Chunk id -> the hit as the store returns it (score 0; scores live in `ranked`)."""
    ids: StoreIds
    model_id: str

    def stored(self, source_list: list[tuple[str, float]]) -> list[StoredHit]:
        """A source's list as the retriever returned it."""
        out = []
        for chunk_id, score in source_list:
            base = self.hits[chunk_id]
            out.append(
                StoredHit(base.id, score, base.doc_id, base.title, base.kind, base.text, 0, base.metadata)
            )
        return out

    def beir_id(self, chunk_id: str) -> str:
        """The corpus id a chunk id belongs to."""
        return self.ids.to_beir(chunk_id.rsplit("#", 1)[0])


def _corpus_hits(dataset: BeirDataset, ids: StoreIds, max_chars: int) -> dict[str, StoredHit]:
    docs, _ = documents_of(dataset.corpus, ids, max_chars)
    hits = {}
    for doc in docs:
        metadata: dict[str, Any] = {**doc.metadata, **({"aliases": list(doc.aliases)} if doc.aliases else {})}
        chunk_id = f"{doc.id}#0"
        hits[chunk_id] = StoredHit(chunk_id, 0.0, doc.id, doc.title, doc.kind, doc.text, 0, metadata)
    return hits


def _record(query_id: str, query: RankingInput, ranked: Mapping[str, list[StoredHit]]) -> dict[str, Any]:
    return {
        "id": query_id,
        "text": query.text,
        "terms": list(query.terms),
        "idf": dict(query.idf),
        "depth": query.depth,
        "ranked": {s: [[h.id, h.score] for h in hits] for s, hits in ranked.items()},
    }


async def collect(
    dataset_dir: Path,
    settings: Settings,
    *,
    name: str = "",
    encoder: Encoder | None = None,
    quiet: bool = False,
) -> CandidateSet:
    """The candidate sets of every judged query of a BEIR dataset (from the disk cache when there)."""
    dataset = load_beir(dataset_dir)
    judged = [q for q in dataset.judged_queries() if q.text.strip()]
    settings = eval_store_settings(settings)
    encoder = encoder or default_encoder(settings)
    ids = StoreIds(list(dataset.corpus))
    await encoder.discover_dim()
    collection = collection_name(corpus_digest(dataset.root), encoder.model_id, settings)
    depth = settings.fusion.candidates
    cache = (
        settings.data.dir
        / "ranking"
        / "candidates"
        / f"{collection}-q{_queries_key(judged)}-n{depth}.jsonl.gz"
    )
    records: dict[str, dict[str, Any]] = {}
    if cache.is_file():
        with gzip.open(cache, "rt", encoding="utf-8") as fh:
            header = json.loads(fh.readline())
            if header.get("schema") == CANDIDATES_SCHEMA:
                records = {r["id"]: r for r in map(json.loads, fh)}
    if len(records) != len(judged):
        config = QualityConfig(dataset=dataset.root, out=cache.parent, quiet=quiet)
        try:
            engine, _ = await open_ingested(settings, encoder, dataset, ids, config)
        except BaseException:
            await encoder.close()
            raise
        try:
            records = {}
            for q in tqdm(judged, desc=f"candidates {name or dataset.root.name}", disable=quiet):
                query, ranked = await engine.service.candidate_lists(q.text)
                records[q.id] = _record(q.id, query, ranked)
        finally:
            await engine.close()
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            fh.write(json.dumps({"schema": CANDIDATES_SCHEMA, "model_id": encoder.model_id}) + "\n")
            for record in records.values():
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        tmp.replace(cache)
    else:
        await encoder.close()
    queries = [
        QueryCandidates(
            q.id,
            RankingInput(r["text"], r["terms"], r["idf"], r["depth"]),
            {s: [(cid, float(score)) for cid, score in hits] for s, hits in r["ranked"].items()},
            dict(dataset.qrels[q.id]),
            dict(q.labels),
        )
        for q in judged
        for r in (records[q.id],)
    ]
    hits = _corpus_hits(dataset, ids, settings.data.max_document_chars)
    return CandidateSet(name or dataset.root.name, dataset, queries, hits, ids, encoder.model_id)


def _queries_key(judged: list[Any]) -> str:
    import hashlib

    joined = "\n".join(f"{q.id}\t{q.text}" for q in judged)
    return hashlib.sha256(joined.encode()).hexdigest()[:12]
