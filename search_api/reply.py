"""A search reply as JSON bytes: the cacheable part encoded once, the per-request part spliced on.

A cache hit is the hot path agents lean on. Decoding a stored reply into structs only to encode
it again costs more than the Redis round trip, so the cache keeps the part of the reply that is
the same for every request sharing the entry (hits, route, mode, paging) as JSON, and each
reply writes its own `took_ms`, `cache`, `query` and `timings_ms` in front of it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from search_api.schemas import Body, CacheInfo, Hit

_encoder = msgspec.json.Encoder()


class CachedReply(Body):
    """The part of a `SearchResponse` that every request answered from one cache entry shares."""

    hits: list[Hit]
    route: dict[str, Any] | None
    degraded: bool
    mode: str
    top_k: int
    offset: int


def encode_shared(reply: CachedReply) -> bytes:
    """The cacheable JSON object."""
    return _encoder.encode(reply)


def splice(
    shared: bytes,
    *,
    took_ms: float,
    query: str,
    tier: Literal["exact", "semantic"] | None = None,
    timings_ms: dict[str, float] | None = None,
) -> bytes:
    """A whole `SearchResponse` body: this request's fields, then the shared object's fields.

    `shared` is a JSON object with at least one field (it always has `hits`), so dropping its
    opening brace and prefixing ours yields one well-formed object with every field once.
    """
    if not shared.startswith(b'{"'):
        raise ValueError("the shared part must be a non-empty JSON object")
    head = b"".join(
        (
            b'{"took_ms":',
            _encoder.encode(round(took_ms, 3)),
            b',"cache":',
            _encoder.encode(CacheInfo(hit=tier is not None, tier=tier)),
            b',"query":',
            _encoder.encode(query),
            b',"timings_ms":',
            _encoder.encode(timings_ms or {}),
            b",",
        )
    )
    return head + shared[1:]
