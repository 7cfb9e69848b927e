"""A search reply as JSON bytes: the answer as the engine keeps it, this request's fields spliced on.

A cache hit is the hot path agents lean on. Decoding a stored answer into structs only to encode
it again costs more than the Redis round trip, so the reply writes its own `took_ms`, `cache`,
`query` and `timings_ms` in front of the answer's JSON object (`retrieval.answer`).
"""

from __future__ import annotations

import msgspec

from retrieval.service import SearchResult
from search_api.schemas import CacheInfo

_encoder = msgspec.json.Encoder()


def splice(result: SearchResult) -> bytes:
    """A whole `SearchResponse` body: this request's fields, then the answer's fields.

    The answer is a JSON object with at least one field (it always has `hits`), so dropping its
    opening brace and prefixing ours yields one well-formed object with every field once.
    """
    answer = result.payload
    if not answer.startswith(b'{"'):
        raise ValueError("the answer must be a non-empty JSON object")
    head = b"".join(
        (
            b'{"took_ms":',
            _encoder.encode(round(result.took_ms, 3)),
            b',"cache":',
            _encoder.encode(CacheInfo(hit=result.tier is not None, tier=result.tier)),
            b',"query":',
            _encoder.encode(result.query),
            b',"timings_ms":',
            _encoder.encode(result.timings_ms),
            b",",
        )
    )
    return head + answer[1:]
