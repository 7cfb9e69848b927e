"""What a search answers: ranked hits, each with its explanation and highlights, as typed structs.

The answer is also what the cache keeps, as JSON bytes (`encode_answer`): a cached answer is
served by splicing those bytes into a response, never by decoding and encoding them again, so
the layout here is the layout of the API's `SearchResponse` (which embeds these structs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from retrieval.highlight import find_terms, mark
from retrieval.types import FusedHit

ANSWER_SCHEMA = "4"
"""Bump when the answer's layout changes, so cached answers of an older layout are never served."""


class AnswerPart(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Base of the answer's structs: a stored answer of another layout fails to decode."""


class SourceExplanation(AnswerPart):
    """One retriever's view of a hit."""

    rank: int
    score: float
    contribution: float


class Explanation(AnswerPart):
    """Why a hit is where it is.

    Each retriever's rank and score (and, under RRF, its share of the fused score); under the
    learned ranker also `ranker`, the largest feature contributions to the hit's score.
    """

    dense: SourceExplanation | None
    sparse: SourceExplanation | None
    fused_score: float
    rrf_k: int
    weights: dict[str, float]
    fusion: str = "rrf"
    ranker: dict[str, float] | None = None
    entity: SourceExplanation | None = None
    """Where the relation-question source (entries asked about and those they name) placed it."""


class Highlight(AnswerPart):
    """A matched query term at [start, end) of `text` (Unicode code point offsets)."""

    start: int
    end: int
    term: str


class Hit(AnswerPart):
    """One chunk in the results."""

    id: str
    doc_id: str
    title: str
    kind: str
    text: str
    score: float
    chunk_index: int
    metadata: dict[str, Any]
    explanation: Explanation
    highlights: list[Highlight]
    highlighted: str
    """`text`, HTML-escaped, with each matched term wrapped in <em>."""


class Answer(AnswerPart):
    """The part of a search reply that every request answered from one cache entry shares."""

    hits: list[Hit]
    route: dict[str, Any] | None
    degraded: bool
    mode: str
    top_k: int
    offset: int
    corrected: dict[str, str] | None = None
    """Names the query spelled otherwise and what they were read as (typed -> lexicon name)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Answer)


def encode_answer(answer: Answer) -> bytes:
    """The answer as a JSON object (what the cache stores and a reply splices)."""
    return _encoder.encode(answer)


def decode_answer(payload: bytes) -> Answer:
    """An answer back from `encode_answer`'s bytes; `msgspec.DecodeError` if of another layout."""
    return _decoder.decode(payload)


def _source(hit: FusedHit, name: str) -> SourceExplanation | None:
    evidence = hit.sources.get(name)
    if evidence is None:
        return None
    return SourceExplanation(rank=evidence.rank, score=evidence.score, contribution=evidence.contribution)


def build_hits(
    hits: Sequence[FusedHit], terms: Sequence[str], *, rrf_k: int, weights: Mapping[str, float], fusion: str
) -> list[Hit]:
    """Answer hits from fused (or ranked) hits: explanation, highlights of the query's terms."""
    out = []
    for fused in hits:
        stored = fused.hit
        marks = find_terms(stored.text, terms)
        out.append(
            Hit(
                id=stored.id,
                doc_id=stored.doc_id,
                title=stored.title,
                kind=stored.kind,
                text=stored.text,
                score=fused.score,
                chunk_index=stored.chunk_index,
                metadata=stored.metadata,
                explanation=Explanation(
                    dense=_source(fused, "dense"),
                    sparse=_source(fused, "sparse"),
                    fused_score=fused.score,
                    rrf_k=rrf_k,
                    weights=dict(weights),
                    fusion=fusion,
                    ranker=dict(fused.contributions) if fused.contributions else None,
                    entity=_source(fused, "entity"),
                ),
                highlights=[Highlight(start=m.start, end=m.end, term=m.term) for m in marks],
                highlighted=mark(stored.text, marks),
            )
        )
    return out
