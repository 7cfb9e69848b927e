"""Cheap features of (query, candidate) pairs for the learned ranker, as one numpy matrix.

Everything here is computed from what the retrievers already returned (their scores and ranks)
and from string searches against the candidates' texts, titles and aliases. The candidates' texts
are joined into one string (and their names into another) so that each query term, bigram and
span is searched once for all candidates by `str.find` in C, jumping to the next candidate after
each hit: the cost grows with the matches, not with candidates x query length. Nothing is
tokenised per candidate; the query's jieba terms and their BM25 IDF come in as plain data
(`RankingInput`).

Sources: "dense" and "sparse" always have columns; any other source name the knowledge base may
add is given columns only if it is listed in `KNOWN_SOURCES` (so a model trained before a source
existed still loads: the columns are NaN there), and unknown names are ignored.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
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


class _Joined:
    """Strings joined by NUL (which no query holds), searched once for all of them."""

    def __init__(self, parts: Sequence[str]):
        self.parts = parts
        self.text = "\x00".join(parts)
        self.starts: list[int] = []
        offset = 0
        for part in parts:
            self.starts.append(offset)
            offset += len(part) + 1
        self._found: dict[str, list[int]] = {}

    def containing(self, sub: str) -> list[int]:
        """Indexes of the parts that contain `sub` (each once, ascending)."""
        # The query's terms, bigrams and span starts overlap: each string is searched once.
        if (known := self._found.get(sub)) is not None:
            return known
        found = self._found[sub] = self._search(sub)
        return found

    def _search(self, sub: str) -> list[int]:
        found: list[int] = []
        find, starts, n = self.text.find, self.starts, len(self.starts)
        pos = find(sub)
        while pos != -1:
            part = bisect_right(starts, pos) - 1
            found.append(part)
            if part + 1 >= n:
                break
            pos = find(sub, starts[part + 1])
        return found

    def spans(self, query: str) -> list[int]:
        """Per part, the length of the longest substring of `query` it contains verbatim."""
        best = [0] * len(self.parts)
        m = len(query)
        for start in range(m - 1):
            length = 2
            parts = self.containing(query[start : start + 2])
            while parts:
                for part in parts:
                    if best[part] < length:
                        best[part] = length
                length += 1
                if start + length > m:
                    break
                # Only a part holding the shorter span can hold the longer one: search just those.
                longer = query[start : start + length]
                parts = [part for part in parts if longer in self.parts[part]]
        if 0 in best and query:
            # One C-level scan per part left at 0, for any of the query's characters.
            shares = re.compile("[" + re.escape("".join(set(query))) + "]").search
            for i, part_text in enumerate(self.parts):
                if best[i] == 0 and shares(part_text):
                    best[i] = 1
        return best


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
    n = len(hits)
    pairs = np.zeros((n, len(_PER_PAIR)))
    if not n:
        return np.hstack([sources, pairs])
    text_q = query.text.strip()
    q_len = max(len(text_q), 1)
    terms = query_terms(query.terms)
    weights = [max(query.idf.get(t, 0.0), 0.0) for t in terms]
    total_weight = sum(weights) or 1.0
    names = [_names(f.hit) for f in hits]
    texts = _Joined([f.hit.text for f in hits])
    heads = _Joined(["\n".join(ns) for ns in names])
    coverage = np.zeros(n)
    idf_coverage = np.zeros(n)
    title_coverage = np.zeros(n)
    for term, weight in zip(terms, weights, strict=True):
        in_head = heads.containing(term)
        anywhere = sorted(set(texts.containing(term)) | set(in_head))
        coverage[anywhere] += 1
        idf_coverage[anywhere] += weight
        title_coverage[in_head] += weight
    grams = _bigrams(text_q)
    gram_hits = np.zeros(n)
    for gram in grams:
        gram_hits[sorted(set(texts.containing(gram)) | set(heads.containing(gram)))] += 1
    text_spans = np.array(texts.spans(text_q), dtype=np.float64)
    head_spans = np.array(heads.spans(text_q), dtype=np.float64)
    spans = np.maximum(text_spans, head_spans)
    titles = [f.hit.title for f in hits]
    pairs[:, 0] = [f.score for f in hits]
    pairs[:, 1] = [len(f.sources) for f in hits]
    pairs[:, 2] = coverage / len(terms) if terms else 0.0
    pairs[:, 3] = idf_coverage / total_weight
    pairs[:, 4] = title_coverage / total_weight
    pairs[:, 5] = gram_hits / len(grams) if grams else 0.0
    pairs[:, 6] = spans
    pairs[:, 7] = spans / q_len
    pairs[:, 8] = head_spans / q_len
    pairs[:, 9] = [1.0 if text_q in ns else 0.0 for ns in names]
    pairs[:, 10] = [
        max((len(nm) for nm in ns if len(nm) >= 2 and nm in text_q), default=0) / q_len for ns in names
    ]
    pairs[:, 11] = [1.0 if any(text_q in nm for nm in ns) else 0.0 for ns in names]
    pairs[:, 12] = [h / len(t) if t else 0.0 for h, t in zip(head_spans.tolist(), titles, strict=True)]
    pairs[:, 13] = [f.hit.text.count(t) if len(t) >= 2 else 0 for f, t in zip(hits, titles, strict=True)]
    pairs[:, 14] = len(text_q)
    pairs[:, 15] = len(terms)
    pairs[:, 16] = [len(f.hit.text) for f in hits]
    pairs[:, 17] = [f.hit.chunk_index for f in hits]
    return np.hstack([sources, pairs])
