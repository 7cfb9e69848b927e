"""Request and response bodies (msgspec structs on one base)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from retrieval.answer import Answer

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
    fusion: str | None = None
    """"learned" or "rrf"; None: the configured `fusion.method`."""


class CacheInfo(Body):
    """Whether the answer came from the cache, and from which tier."""

    hit: bool = False
    tier: Literal["exact", "canonical", "semantic"] | None = None


class SearchResponse(Answer, kw_only=True):
    """`POST /v1/search` reply: this request's fields, then the answer's (`retrieval.answer.Answer`).

    The answer's fields are the engine's (the cache keeps them as JSON, `search_api.reply` splices
    this request's fields onto them); this struct documents the whole reply.
    """

    took_ms: float
    cache: CacheInfo
    query: str
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
    ranking: dict[str, Any] = msgspec.field(default_factory=dict)
    """The fusion configured and the one served ("rrf" when no ranker fits the encoder), the ranker."""
    detail: str | None = None
    degraded: bool = False
