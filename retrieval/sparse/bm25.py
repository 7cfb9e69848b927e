"""BM25 as sparse vectors whose inner product is rank-bm25's `BM25Okapi` score.

For a document d and query q, BM25Okapi scores

    sum over query tokens t (with repetition) of  idf(t) * tf(t,d)*(k1+1) / (tf(t,d) + k1*(1-b+b*|d|/avgdl))

so the document side stores the saturated term weight (right factor) and the query side stores
idf(t) times the token's count in the query. Milvus' IP over the two sparse vectors is then the
score. The IDF follows rank-bm25 exactly, including its quirk of replacing negative IDFs with
epsilon times the mean IDF over the whole vocabulary.

Document weights depend on avgdl, which moves as the corpus changes. Stored weights are computed
against a *reference* avgdl; `needs_reweight` says when the live avgdl has drifted far enough that
stored vectors should be rewritten (the pipeline does it). The IDF side is always live.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.types import SparseVector

_MAX_TERM_ID = 2**32 - 2  # Milvus sparse indices are uint32; keep clear of the sentinel max.


@dataclass(frozen=True, slots=True)
class TermCounts:
    """A document's bag of words: token -> count, and its length in tokens (with repeats)."""

    tf: dict[str, int]
    length: int

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> TermCounts:
        """Count tokens."""
        counts: Counter[str] = Counter(tokens)
        return cls(tf=dict(counts), length=sum(counts.values()))


@dataclass(frozen=True, slots=True)
class Bm25Params:
    """BM25Okapi parameters (rank-bm25 defaults)."""

    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1 or self.epsilon < 0:
            raise ValueError(f"invalid BM25 parameters: {self}")


class Bm25Statistics:
    """Corpus statistics (N, total length, document frequencies), kept exact across changes."""

    def __init__(self, params: Bm25Params | None = None):
        self.params = params or Bm25Params()
        self.n_docs = 0
        self.total_len = 0
        self.df: dict[str, int] = {}
        # Term ids are handed out once and never reused, so a stored vector never changes meaning.
        # (A hash would need no table, but 32-bit hashes collide: one pair in CMRC's 42k tokens.)
        self.vocab: dict[str, int] = {}
        self.next_id = 0
        self.reference_avgdl = 0.0
        self._idf_cache: tuple[int, dict[int, float]] | None = None
        self._generation = 0

    # -- maintenance -------------------------------------------------------------------------
    def add(self, doc: TermCounts) -> None:
        """Count a new (or re-added) document."""
        self.n_docs += 1
        self.total_len += doc.length
        for term in doc.tf:
            self.df[term] = self.df.get(term, 0) + 1
            if term not in self.vocab:
                self.vocab[term] = self._next_id()
        self._changed()

    def remove(self, doc: TermCounts) -> None:
        """Un-count a document previously added with exactly these counts."""
        if self.n_docs <= 0:
            raise ValueError("removing a document from empty BM25 statistics")
        self.n_docs -= 1
        self.total_len -= doc.length
        for term in doc.tf:
            left = self.df.get(term, 0) - 1
            if left > 0:
                self.df[term] = left
            else:
                self.df.pop(term, None)
        self._changed()

    def _next_id(self) -> int:
        if self.next_id > _MAX_TERM_ID:
            raise OverflowError("BM25 vocabulary exceeds the uint32 id space")
        self.next_id += 1
        return self.next_id - 1

    def adopt_ids(self, ids: Mapping[str, int]) -> None:
        """Take term ids found in the store (when statistics are rebuilt from it)."""
        self.vocab.update(ids)
        if ids:
            self.next_id = max(self.next_id, max(ids.values()) + 1)

    def counts_json(self, doc: TermCounts) -> dict[str, list[int]]:
        """Store form of a document's counts: term -> [term id, count], so ids can be recovered."""
        return {term: [self.vocab[term], count] for term, count in doc.tf.items()}

    @staticmethod
    def counts_from_json(data: Mapping[str, Sequence[int]], length: int) -> tuple[TermCounts, dict[str, int]]:
        """Inverse of `counts_json`: the counts and the term ids they were stored with."""
        tf = {term: int(pair[1]) for term, pair in data.items()}
        ids = {term: int(pair[0]) for term, pair in data.items()}
        return TermCounts(tf, int(length)), ids

    def _changed(self) -> None:
        self._generation += 1
        self._idf_cache = None

    @property
    def avgdl(self) -> float:
        """Live average document length."""
        return self.total_len / self.n_docs if self.n_docs else 0.0

    def drift(self) -> float:
        """Relative distance between the live avgdl and the one stored weights were built with."""
        if not self.n_docs:
            return 0.0
        if self.reference_avgdl <= 0:
            return math.inf
        return abs(self.avgdl - self.reference_avgdl) / self.avgdl

    def needs_reweight(self, tolerance: float) -> bool:
        """Whether stored document vectors are stale by more than `tolerance`."""
        return self.drift() > tolerance

    def rebase(self) -> None:
        """Adopt the live avgdl as reference (call after rewriting every document vector)."""
        self.reference_avgdl = self.avgdl

    # -- vectors ----------------------------------------------------------------------------
    def document_vector(self, doc: TermCounts) -> SparseVector:
        """Saturated term weights of a document against the reference avgdl."""
        k1, b = self.params.k1, self.params.b
        avgdl = self.reference_avgdl or self.avgdl or float(doc.length or 1)
        norm = k1 * (1 - b + b * doc.length / avgdl)
        return {self.vocab[term]: tf * (k1 + 1) / (tf + norm) for term, tf in doc.tf.items() if tf > 0}

    def idf(self) -> dict[int, float]:
        """rank-bm25's IDF table for the current corpus (cached until the statistics change)."""
        if self._idf_cache is not None and self._idf_cache[0] == self._generation:
            return self._idf_cache[1]
        table: dict[int, float] = {}
        if self.df:
            ids = np.fromiter((self.vocab[t] for t in self.df), dtype=np.int64, count=len(self.df))
            freqs = np.fromiter(self.df.values(), dtype=np.float64, count=len(self.df))
            idf = np.log(self.n_docs - freqs + 0.5) - np.log(freqs + 0.5)
            eps = self.params.epsilon * float(idf.mean())
            idf = np.where(idf < 0, eps, idf)
            table = dict(zip(ids.tolist(), idf.tolist(), strict=True))
        self._idf_cache = (self._generation, table)
        return table

    def query_vector(self, tokens: Iterable[str]) -> SparseVector:
        """IDF times the token's count in the query (rank-bm25 sums repeated query tokens)."""
        idf = self.idf()
        vector: SparseVector = {}
        for term, count in Counter(tokens).items():
            tid = self.vocab.get(term)
            if tid is None:
                continue  # never seen in the corpus: idf 0, as in rank-bm25
            weight = idf.get(tid, 0.0) * count
            # Milvus rejects negative sparse values; they arise only when the mean IDF is negative
            # (a handful of near-identical documents), where BM25 ranking is meaningless anyway.
            if weight > 0:
                vector[tid] = weight
        return vector

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Path, *, tag: str, analysis: str | None = None) -> None:
        """Write atomically; `tag` identifies the store state this snapshot matches.

        `analysis` records how the stored terms were made (`retrieval.text.ANALYSIS`), read back
        by `recorded_analysis` whether or not the rest of the snapshot is still usable.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        payload = {
            "tag": tag,
            "analysis": analysis,
            "n_docs": self.n_docs,
            "total_len": self.total_len,
            "reference_avgdl": self.reference_avgdl,
            "params": [self.params.k1, self.params.b, self.params.epsilon],
            "df": self.df,
            "vocab": self.vocab,
            "next_id": self.next_id,
        }
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(payload, fh, separators=(",", ":"), ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @staticmethod
    def recorded_analysis(path: Path) -> str | None:
        """The analysis a snapshot recorded; None when there is no readable snapshot or it has none."""
        try:
            with path.open(encoding="utf-8") as fh:
                value = json.load(fh).get("analysis")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    @classmethod
    def load(cls, path: Path, params: Bm25Params, *, tag: str) -> Bm25Statistics | None:
        """Read a snapshot if it exists, matches `tag` and was built with the same parameters."""
        try:
            with path.open(encoding="utf-8") as fh:
                payload = json.load(fh)
        except (OSError, ValueError):
            return None
        if payload.get("tag") != tag or payload.get("params") != [params.k1, params.b, params.epsilon]:
            return None
        stats = cls(params)
        stats.n_docs = int(payload["n_docs"])
        stats.total_len = int(payload["total_len"])
        stats.df = {str(k): int(v) for k, v in payload["df"].items()}
        stats.vocab = {str(k): int(v) for k, v in payload["vocab"].items()}
        stats.next_id = int(payload["next_id"])
        stats.reference_avgdl = float(payload["reference_avgdl"])
        return stats


def bm25_score(query: SparseVector, document: SparseVector) -> float:
    """Inner product of two sparse vectors (what Milvus computes); used in tests and checks."""
    if len(query) > len(document):
        query, document = document, query
    return math.fsum(w * document.get(tid, 0.0) for tid, w in query.items())
