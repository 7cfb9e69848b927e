"""Request and response bodies (msgspec structs on one base)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Scalar = str | int | float | bool


class Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Base of every body: unknown fields are an error, so a typo never goes silently unused."""


class Filters(Body):
    """Restrict a search by kind, document or metadata equality."""

    kind: str | list[str] | None = None
    doc_id: list[str] | None = None
    metadata: dict[str, Scalar] | None = None


class SearchRequest(Body):
    """`POST /v1/search` body."""

    query: str
    top_k: int = 10
    offset: int = 0
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    filters: Filters | None = None
    cache: bool = True
    route: str | None = None


class SourceExplanation(Body):
    """One retriever's view of a hit."""

    rank: int
    score: float
    contribution: float


class Explanation(Body):
    """Why a hit is where it is: each retriever's rank and score, and its share of the fused score."""

    dense: SourceExplanation | None
    sparse: SourceExplanation | None
    fused_score: float
    rrf_k: int
    weights: dict[str, float]


class Highlight(Body):
    """A matched query term at [start, end) of `text` (Unicode code point offsets)."""

    start: int
    end: int
    term: str


class Hit(Body):
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


class CacheInfo(Body):
    """Whether the answer came from the cache, and from which tier."""

    hit: bool = False
    tier: Literal["exact", "semantic"] | None = None


class SearchResponse(Body):
    """`POST /v1/search` reply."""

    hits: list[Hit]
    took_ms: float
    route: dict[str, Any] | None
    cache: CacheInfo
    degraded: bool
    query: str
    mode: str
    top_k: int
    offset: int
    timings_ms: dict[str, float]


class DocumentIn(Body):
    """One document to upsert."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    text: str
    title: str = ""
    kind: str = "lore"
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    aliases: list[str] = msgspec.field(default_factory=list)


class DocumentsRequest(Body):
    """`POST /v1/documents` body: a batch upsert."""

    documents: list[DocumentIn]


class DocumentsResponse(Body):
    """What an upsert or delete changed."""

    documents: int
    chunks: int
    removed_chunks: int
    per_document: dict[str, int]
    kb_version: int


class ErrorBody(Body):
    """Every error reply: a stable machine-readable `code` and a readable `message`."""

    code: str
    message: str
    field: str | None = None
    request_id: str | None = None


class Health(Body):
    """Liveness."""

    status: Literal["ok"] = "ok"


class Readiness(Body):
    """Readiness and the state of each dependency."""

    ready: bool
    encoder: dict[str, Any]
    store: dict[str, Any]
    cache: dict[str, Any]
    detail: str | None = None
    degraded: bool = False
