"""Cheap features of (query, candidate) pairs for the learned ranker, as one numpy matrix.

Everything here is computed from what the retrievers already returned (their scores and ranks)
and from plain string tests against the candidate's text, title and aliases: `in` on Python
strings runs in C, so a query of 20 characters against 100 candidates of 400 costs well under a
millisecond. Nothing is tokenised per candidate; the query's jieba terms and their BM25 IDF come
in as plain data (`RankingInput`).

Sources: "dense" and "sparse" always have columns; any other source name the knowledge base may
add is given columns only if it is listed in `KNOWN_SOURCES` (so a model trained before a source
existed still loads: the columns are NaN there), and unknown names are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from retrieval.types import FusedHit, StoredHit

KNOWN_SOURCES = ("dense", "sparse", "entity")
"""Sources with feature columns; a source missing from a query's lists gets NaN / depth+1."""

_PER_SOURCE = ("score", "score_norm", "score_gap", "rank", "rank_recip")
_PER_PAIR = (
    "rrf",
    "n_sources",
    "term_coverage",
    "idf_coverage",
    "title_idf_coverage",
    "bigram_overlap",
    "span_chars",
    "span_share",
    "span_title_share",
    "name_exact",
    "name_in_query",
    "query_in_name",
    "name_share",
    "name_mentions",
    "query_chars",
    "query_terms",
    "text_chars",
    "chunk_index",
)
FEATURES: tuple[str, ...] = tuple(f"{s}_{p}" for s in KNOWN_SOURCES for p in _PER_SOURCE) + _PER_PAIR
"""Column names, in matrix order (a model file records the list it was trained with)."""

_NAN = math.nan


@dataclass(frozen=True)
class RankingInput:
    """What the ranker knows about the query: its text, its jieba terms and their IDF."""

    text: str
    terms: Sequence[str]
    idf: Mapping[str, float] = field(default_factory=dict)
    """BM25 IDF of each query term under the live statistics (a term the corpus lacks: absent)."""
    depth: int = 100
    """Each retriever's list length: a missing rank counts as depth + 1."""


def query_terms(terms: Sequence[str]) -> list[str]:
    """The distinct terms worth matching: punctuation and spaces carry no evidence."""
    seen: dict[str, None] = {}
    for term in terms:
        if any(ch.isalnum() for ch in term):
            seen.setdefault(term, None)
    return list(seen)


def longest_shared_span(query: str, text: str) -> int:
    """Length of the longest substring of `query` that occurs verbatim in `text`.

    Grows the best length found so far: each start position costs one `in` test unless the span
    can be extended, so the work is O(len(query) + answer) substring searches.
    """
    best = 0
    n = len(query)
    for start in range(n):
        if n - start <= best:
            break
        while start + best < n and query[start : start + best + 1] in text:
            best += 1
    return best


def _bigrams(text: str) -> list[str]:
    grams = {text[i : i + 2] for i in range(len(text) - 1)}
    return [g for g in grams if all(ch.isalnum() for ch in g)]


def _names(hit: StoredHit) -> list[str]:
    return [n for n in (hit.title, *hit.aliases) if n]


def _source_columns(
    hits: Sequence[FusedHit], ranked: Mapping[str, Sequence[StoredHit]], depth: int
) -> npt.NDArray[np.float64]:
    out = np.full((len(hits), len(KNOWN_SOURCES) * len(_PER_SOURCE)), _NAN)
    for s_idx, source in enumerate(KNOWN_SOURCES):
        listed = ranked.get(source)
        base = s_idx * len(_PER_SOURCE)
        missing_rank = float(depth + 1)
        out[:, base + 3] = missing_rank
        out[:, base + 4] = 0.0
        if not listed:
            continue
        scores = [h.score for h in listed]
        top, low = max(scores), min(scores)
        spread = top - low
        for row, fused in enumerate(hits):
            evidence = fused.sources.get(source)
            if evidence is None:
                continue
            out[row, base] = evidence.score
            out[row, base + 1] = (evidence.score - low) / spread if spread > 0 else 1.0
            out[row, base + 2] = top - evidence.score
            out[row, base + 3] = evidence.rank
            out[row, base + 4] = 1.0 / evidence.rank
    return out


def feature_matrix(
    query: RankingInput, hits: Sequence[FusedHit], ranked: Mapping[str, Sequence[StoredHit]]
) -> npt.NDArray[np.float64]:
    """One row per candidate (in `hits` order), one column per `FEATURES` name."""
    sources = _source_columns(hits, ranked, query.depth)
    pairs = np.zeros((len(hits), len(_PER_PAIR)))
    text_q = query.text.strip()
    q_len = max(len(text_q), 1)
    terms = query_terms(query.terms)
    weights = [max(query.idf.get(t, 0.0), 0.0) for t in terms]
    total_weight = sum(weights) or 1.0
    grams = _bigrams(text_q)
    for row, fused in enumerate(hits):
        hit = fused.hit
        text = hit.text
        names = _names(hit)
        head = "\n".join(names)
        present = [t in text or t in head for t in terms]
        in_head = [t in head for t in terms]
        span = longest_shared_span(text_q, text)
        head_span = longest_shared_span(text_q, head) if head else 0
        exact = any(n == text_q for n in names)
        inside = [n for n in names if len(n) >= 2 and n in text_q]
        title = hit.title
        pairs[row] = (
            fused.score,
            len(fused.sources),
            sum(present) / len(terms) if terms else 0.0,
            sum(w for w, p in zip(weights, present, strict=True) if p) / total_weight,
            sum(w for w, p in zip(weights, in_head, strict=True) if p) / total_weight,
            sum(1 for g in grams if g in text or g in head) / len(grams) if grams else 0.0,
            max(span, head_span),
            max(span, head_span) / q_len,
            head_span / q_len,
            1.0 if exact else 0.0,
            max((len(n) for n in inside), default=0) / q_len,
            1.0 if any(text_q in n for n in names) else 0.0,
            head_span / max(len(title), 1) if title else 0.0,
            text.count(title) if len(title) >= 2 else 0,
            len(text_q),
            len(terms),
            len(text),
            hit.chunk_index,
        )
    return np.hstack([sources, pairs])
