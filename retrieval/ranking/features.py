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
from functools import lru_cache
from itertools import accumulate

import numpy as np
import numpy.typing as npt

from retrieval.text import fold
from retrieval.types import FusedHit, StoredHit, aliases_of

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
    "quote_verbatim",
    "name_typed",
)
FEATURES: tuple[str, ...] = tuple(f"{s}_{p}" for s in KNOWN_SOURCES for p in _PER_SOURCE) + _PER_PAIR
"""Column names, in matrix order (a model file records the list it was trained with)."""
RULE_FEATURES = ("quote_verbatim", "name_typed")
"""Columns that serving rules read (`ranking.ranker.exact_lift`) and models are not trained on."""
MODEL_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if f not in RULE_FEATURES)
"""The columns a model is trained on, in matrix order."""


def columns(names: Sequence[str]) -> npt.NDArray[np.intp]:
    """Indexes of the named columns in the feature matrix, in the order given."""
    return np.array([FEATURES.index(name) for name in names], dtype=np.intp)


_NAN = math.nan
QUOTE_MIN_CHARS = 8
"""A query of at least this many letters and digits found whole in a text is quoted from it."""
_NOT_WORD = re.compile(r"[^\w\x00\x01]|_")
"""Punctuation, spaces and symbols (not the NUL and \\x01 marks joined strings use): a quote is
typed with other commas and spaces than the text's."""


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
    return [n for n in (hit.title, *aliases_of(hit.metadata)) if n]


class _Joined:
    """Strings joined by NUL (which no query holds), searched once for all of them."""

    def __init__(self, parts: Sequence[str]):
        self.parts = parts
        self.text = "\x00".join(parts)
        self.starts = [0, *accumulate(len(part) + 1 for part in parts)][:-1]
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
    width = len(_PER_SOURCE)
    out = np.full((len(hits), len(KNOWN_SOURCES) * width), _NAN)
    for s_idx, source in enumerate(KNOWN_SOURCES):
        base = s_idx * width
        out[:, base + 3] = float(depth + 1)
        out[:, base + 4] = 0.0
        listed = ranked.get(source)
        if not listed:
            continue
        top = max(h.score for h in listed)
        low = min(h.score for h in listed)
        spread = top - low
        # Column-wise: one numpy assignment per feature, not one per candidate and feature.
        evidence = [(row, f.sources.get(source)) for row, f in enumerate(hits)]
        found = [(row, e.score, e.rank) for row, e in evidence if e is not None]
        if not found:
            continue
        rows = [row for row, _, _ in found]
        score = np.array([sc for _, sc, _ in found], dtype=np.float64)
        rank = np.array([rk for _, _, rk in found], dtype=np.float64)
        out[rows, base] = score
        out[rows, base + 1] = (score - low) / spread if spread > 0 else 1.0
        out[rows, base + 2] = top - score
        out[rows, base + 3] = rank
        out[rows, base + 4] = 1.0 / rank
    return out


class _Evidence:
    """The candidates' texts and names as joined strings, searched for query strings.

    `both` joins each candidate's names and text with a newline, so one search answers "in the
    names or the text" for any string without a newline (which cannot straddle the two); strings
    holding one take the exact, slower way through separate texts and names.
    """

    def __init__(self, hits: Sequence[FusedHit], names: Sequence[list[str]]):
        self._hits = hits
        self.heads = _Joined(["\n".join(ns) for ns in names])
        self.both = _Joined([h + "\n" + f.hit.text for h, f in zip(self.heads.parts, hits, strict=True)])
        self._texts: _Joined | None = None

    @property
    def texts(self) -> _Joined:
        if self._texts is None:
            self._texts = _Joined([f.hit.text for f in self._hits])
        return self._texts

    def anywhere(self, sub: str) -> list[int]:
        """Candidates whose names or text contain `sub` (ascending)."""
        if "\n" not in sub:
            return self.both.containing(sub)
        return sorted(set(self.texts.containing(sub)) | set(self.heads.containing(sub)))

    def spans(self, query: str) -> list[int]:
        """Per candidate, the longest substring of `query` in its names or its text."""
        if "\n" not in query:
            return self.both.spans(query)
        return [max(t, h) for t, h in zip(self.texts.spans(query), self.heads.spans(query), strict=True)]


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
    found = _Evidence(hits, names)
    heads = found.heads
    coverage = np.zeros(n)
    idf_coverage = np.zeros(n)
    title_coverage = np.zeros(n)
    for term, weight in zip(terms, weights, strict=True):
        anywhere = found.anywhere(term)
        coverage[anywhere] += 1
        idf_coverage[anywhere] += weight
        title_coverage[heads.containing(term)] += weight
    grams = _bigrams(text_q)
    gram_hits = np.zeros(n)
    for gram in grams:
        gram_hits[found.anywhere(gram)] += 1
    spans = np.array(found.spans(text_q), dtype=np.float64)
    head_spans = np.array(heads.spans(text_q), dtype=np.float64)
    pairs[:, 0:2] = [(f.score, len(f.sources)) for f in hits]
    pairs[:, 2] = coverage / len(terms) if terms else 0.0
    pairs[:, 3] = idf_coverage / total_weight
    pairs[:, 4] = title_coverage / total_weight
    pairs[:, 5] = gram_hits / len(grams) if grams else 0.0
    pairs[:, 6] = spans
    pairs[:, 7] = spans / q_len
    pairs[:, 8] = head_spans / q_len
    pairs[:, 9:12] = _name_matches(text_q, names, heads)
    pairs[:, 9:12] /= (1.0, q_len, 1.0)
    title_chars = np.array([len(f.hit.title) for f in hits], dtype=np.float64)
    pairs[:, 12] = np.divide(head_spans, title_chars, out=np.zeros(n), where=title_chars > 0)
    pairs[:, 13:14] = [(f.hit.text.count(f.hit.title) if len(f.hit.title) >= 2 else 0,) for f in hits]
    pairs[:, 14] = len(text_q)
    pairs[:, 15] = len(terms)
    pairs[:, 16:18] = [(len(f.hit.text), f.hit.chunk_index) for f in hits]
    pairs[:, 18] = _quoted(text_q, hits, found)
    pairs[:, 19] = _typed_name(text_q, names)
    return np.hstack([sources, pairs])


def _bare(text: str) -> str:
    """`text` without spaces, punctuation or case."""
    return _NOT_WORD.sub("", text).casefold()


@lru_cache(maxsize=65536)
def _plain(text: str) -> str:
    """`text` folded (`retrieval.text.fold`: traditional to simplified, width) and bare: how a name
    or a quote compares to a query, which arrives folded.

    Cached: the same names come back with every query about them.
    """
    return _bare(fold(text))


def _typed_name(text_q: str, names: Sequence[list[str]]) -> npt.NDArray[np.float64]:
    """1 for each candidate one of whose names is the query, spaces, punctuation and case aside
    (the query arrives as `search_text` normalised it: "第十二章 雪夜渡江" as "第十二章雪夜渡江")."""
    words = _plain(text_q)
    if not words:
        return np.zeros(len(names))
    return np.array([any(_plain(n) == words for n in ns) for ns in names], dtype=np.float64)


def _quoted(text_q: str, hits: Sequence[FusedHit], found: _Evidence) -> npt.NDArray[np.float64]:
    """1 for each candidate whose text holds the whole query (punctuation and spaces aside), when
    the query is long enough to be a quote; else 0."""
    out = np.zeros(len(hits))
    words = _plain(text_q)
    if len(words) < QUOTE_MIN_CHARS:
        return out
    # A text holding the whole query holds its longest unbroken piece verbatim, unless the text
    # breaks that piece with a space or a mark of its own (rare in Chinese, and then missed):
    # one search in the joined candidates finds those few texts, and only they are stripped.
    piece = max(_NOT_WORD.split(text_q), key=len)
    for row in found.anywhere(piece):
        if words in _bare(hits[row].hit.text):
            out[row] = 1.0
    return out


def _name_matches(text_q: str, names: Sequence[list[str]], heads: _Joined) -> npt.NDArray[np.float64]:
    """Per candidate: the query is one of its names; the longest of its names (2+ characters) inside
    the query, in characters; the query is inside one of its names."""
    out = np.zeros((len(names), 3))
    if not text_q or "\n" in text_q:
        for row, ns in enumerate(names):
            out[row, 0] = text_q in ns
            out[row, 1] = max((len(nm) for nm in ns if len(nm) >= 2 and nm in text_q), default=0)
            out[row, 2] = any(text_q in nm for nm in ns)
        return out
    # A name inside the query, or the query inside a name, is a string search in the joined names:
    # only the candidates it finds are looked at one by one.
    for row in heads.containing(text_q):
        out[row, 0] = text_q in names[row]
        out[row, 2] = 1.0
    inside = {nm for ns in names for nm in ns if len(nm) >= 2 and nm in text_q}
    for nm in inside:
        for row in heads.containing(nm):
            if nm in names[row] and len(nm) > out[row, 1]:
                out[row, 1] = len(nm)
    return out
