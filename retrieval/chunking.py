"""Sentence-aware chunking for Chinese text.

Chunks end at sentence punctuation where possible so a chunk reads as whole sentences; a
sentence longer than a chunk is cut at clause punctuation, and only as a last resort mid-clause.
Every chunk keeps its character span in the source so answers can be located (CMRC chunk-level
relevance uses it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A sentence ends at 。！？；!?; or a newline, plus any closing quotes/brackets that follow it.
_SENTENCE_END = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;\n]+[”’」』）)】》\"']*|$)")
_CLAUSE_END = re.compile(r"[^，、,：:]*(?:[，、,：:]+|$)")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document: its text and where it sits in the source text."""

    index: int
    text: str
    start: int
    end: int


def _pieces(text: str, pattern: re.Pattern[str], offset: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for match in pattern.finditer(text):
        if match.end() > match.start():
            spans.append((offset + match.start(), offset + match.end()))
    return spans


def _units(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Split into spans no longer than max_chars: sentences, else clauses, else hard cuts."""
    units: list[tuple[int, int]] = []
    for start, end in _pieces(text, _SENTENCE_END, 0):
        if end - start <= max_chars:
            units.append((start, end))
            continue
        for c_start, c_end in _pieces(text[start:end], _CLAUSE_END, start):
            for cut in range(c_start, c_end, max_chars):
                units.append((cut, min(cut + max_chars, c_end)))
    return units


def chunk_text(text: str, max_chars: int = 400, min_chars: int = 40) -> list[Chunk]:
    """Pack whole sentences greedily into chunks of at most `max_chars` characters.

    A trailing piece shorter than `min_chars` joins the previous chunk when that still fits in
    1.5 x max_chars, so no chunk is a dangling fragment. Leading/trailing whitespace of each chunk
    is dropped but the span always points at the exact source characters of `text`.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    spans: list[tuple[int, int]] = []
    cur_start: int | None = None
    cur_end = 0
    for start, end in _units(text, max_chars):
        if cur_start is None:
            cur_start, cur_end = start, end
        elif end - cur_start <= max_chars:
            cur_end = end
        else:
            spans.append((cur_start, cur_end))
            cur_start, cur_end = start, end
    if cur_start is not None:
        spans.append((cur_start, cur_end))

    if len(spans) >= 2 and spans[-1][1] - spans[-1][0] < min_chars:
        last_start, last_end = spans.pop()
        prev_start, _ = spans[-1]
        if last_end - prev_start <= int(max_chars * 1.5):
            spans[-1] = (prev_start, last_end)
        else:
            spans.append((last_start, last_end))

    chunks: list[Chunk] = []
    for start, end in spans:
        # Trim whitespace but keep the span exact.
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            chunks.append(Chunk(index=len(chunks), text=text[start:end], start=start, end=end))
    return chunks
