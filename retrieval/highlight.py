"""Where a query's terms occur in a hit's text: offsets for clients, `<em>` markup for pages."""

from __future__ import annotations

import functools
import html
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from retrieval.text import to_simplified


@dataclass(frozen=True, slots=True)
class Highlight:
    """One matched term at [start, end) of the original text (Python string offsets)."""

    start: int
    end: int
    term: str


# Hits are the knowledge base's chunks, the same texts request after request: folding one costs a
# normalisation per character, so the folded form of recent texts is kept (a few MB at most).
_FOLDED_TEXTS = 4096


@functools.lru_cache(maxsize=_FOLDED_TEXTS)
def _folded(text: str) -> tuple[str, tuple[int, ...]]:
    """Text folded like the tokenizer folds it (`retrieval.text.fold`), with each char's source index.

    NFKC can turn one character into several (e.g. a ligature), so offsets are mapped back per
    character rather than assumed equal; the traditional-to-simplified step keeps the length, so
    it applies to the whole folded text and the map still holds. The result is immutable, as
    cached results must be.
    """
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for out in unicodedata.normalize("NFKC", char).lower():
            folded.append(out)
            origin.append(index)
    joined = "".join(folded)
    simplified = to_simplified(joined)
    if len(simplified) != len(joined):  # never seen; per character keeps the map exact regardless
        simplified = "".join(to_simplified(c) if len(to_simplified(c)) == 1 else c for c in joined)
    return simplified, tuple(origin)


def find_terms(text: str, terms: Iterable[str]) -> list[Highlight]:
    """Non-overlapping occurrences of the terms, longest term first where two overlap."""
    folded, origin = _folded(text)
    spans: list[tuple[int, int, str]] = []
    for term in sorted({t for t in terms if t}, key=len, reverse=True):
        start = folded.find(term)
        while start != -1:
            end = start + len(term)
            if all(end <= s or start >= e for s, e, _ in spans):
                spans.append((start, end, term))
            start = folded.find(term, end)
    spans.sort()
    return [Highlight(origin[s], origin[e - 1] + 1, term) for s, e, term in spans]


def mark(text: str, highlights: list[Highlight], tag: str = "em") -> str:
    """HTML-escaped text with each highlight wrapped in `<tag>`; safe to insert as HTML."""
    parts: list[str] = []
    cursor = 0
    for h in highlights:
        parts.append(html.escape(text[cursor : h.start]))
        parts.append(f"<{tag}>{html.escape(text[h.start : h.end])}</{tag}>")
        cursor = h.end
    parts.append(html.escape(text[cursor:]))
    return "".join(parts)
