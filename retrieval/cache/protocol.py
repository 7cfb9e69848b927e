"""The query-cache role: value types and the narrow `Cache` protocol the pipeline calls.

A search consults the cache up to three times: the exact tier before the query is encoded (keyed
by the normalised text and everything else that shapes the response), the canonical tier still
before encoding (keyed by the query's meaning-bearing tokens and guard sets, `canonical`), and
the semantic tier after it (the query vector the pipeline computed anyway, plus guards against
near-duplicates that ask something else, plus, in the verified band below the trusted threshold,
the query's own sparse results as evidence). Every tier only ever serves entries written under
the current `kb_version`, which the cache owns so that every worker sharing it agrees on one value.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence, Set
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from retrieval.text import fold, plain_question
from retrieval.types import SearchFilter

Tier = Literal["exact", "canonical", "semantic"]
GuardReason = Literal["entities", "negation", "numbers", "roles", "evidence"]
"""Why a semantic candidate was refused: a guard set differs, or ("evidence") the query's own
sparse results do not overlap the cached answer enough (the verified band, see `CacheConfig`)."""
QueryVector = npt.NDArray[np.float32]
"""One L2-normalised query embedding: shape (dim,) or the pipeline's (1, dim)."""
Evidence = Sequence[str]
"""Document ids, best first: a cached answer's top hits, or a query's own sparse top-k."""
EvidenceSource = Callable[[int], Awaitable[Evidence]]
"""The caller's way to produce the query's own top documents (as many as the cache asks for),
awaited only when a candidate in the verified band needs it."""

_WHITESPACE = re.compile(r"\s+")
# Separates key fields before hashing so ("a", "bc") and ("ab", "c") never collide.
_FIELD_SEP = "\x1f"


def normalise_query(text: str) -> str:
    """The exact-tier form of a query, which is also the text searched: folded (`fold`), whitespace
    collapsed, trailing punctuation cut, then `plain_question` (wrappers, final particles, spaces
    inside Chinese gone).

    '林动的师父是谁？', ' 林动的师父是谁 ' and '请问林动的师父是谁呢' are the same question; inner
    punctuation is kept because it can change the meaning ('林动，林炎' lists two names).
    """
    text = _WHITESPACE.sub(" ", fold(text)).strip()
    end = len(text)
    while end and (text[end - 1].isspace() or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return plain_question(text[:end])


def filters_key(where: SearchFilter | None) -> str:
    """A canonical string for a search filter ('' when unrestricted); `SearchFilter.build` sorts values."""
    if where is None or where.is_empty:
        return ""
    return json.dumps(asdict(where), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _digest(*parts: str) -> str:
    return hashlib.blake2b(_FIELD_SEP.join(parts).encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheKey:
    """What a cached response depends on, apart from `kb_version` (the cache stamps that itself).

    `query` is already normalised (build keys with `CacheKey.for_query`). `config_version` names
    everything else that shapes the response: model id, fusion weights, page (top_k/offset), the
    response schema. `route` is the route the request is served under as known before encoding.
    `canonical` is the query's canonical form (`retrieval.cache.canonical.canonical_form`); empty,
    the canonical tier neither serves nor stores the query.
    """

    query: str
    filters: str = ""
    mode: str = "hybrid"
    route: str = ""
    config_version: str = ""
    canonical: str = ""

    def __post_init__(self) -> None:
        if not self.query:
            raise ValueError("a cache key needs a non-empty normalised query")

    @classmethod
    def for_query(
        cls,
        query: str,
        *,
        filters: str = "",
        mode: str = "hybrid",
        route: str = "",
        config_version: str = "",
        canonical: str = "",
    ) -> CacheKey:
        """Normalise `query` (see `normalise_query`) and build the key."""
        return cls(normalise_query(query), filters, str(mode), route, config_version, canonical)

    @property
    def partition(self) -> str:
        """Digest of the structural fields: semantic candidates must share it (filters, mode, route...)."""
        return _digest(self.filters, self.mode, self.route, self.config_version)

    @property
    def digest(self) -> str:
        """Digest of the whole key: the exact-tier entry id."""
        return _digest(self.partition, self.query)

    @property
    def canonical_digest(self) -> str:
        """The canonical-tier entry id ('' without a canonical form); never equal to an exact digest."""
        return _digest(self.partition, "canonical", self.canonical) if self.canonical else ""


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A cached response and what serving it saved."""

    tier: Tier
    payload: bytes
    similarity: float
    """1.0 for exact and canonical hits; the cosine between the two query vectors for semantic hits."""
    saved_ms: float
    """The `cost_ms` recorded when the response was computed."""


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """The answer of one lookup: a hit or a miss, plus the version it was judged against."""

    hit: CacheHit | None
    kb_version: int
    """Pass this to `put` so a response computed before an ingest is never stored as current."""
    rejection: GuardReason | None = None
    """Semantic tier: the guard that refused the closest candidate above the threshold."""
    degraded: bool = False
    """The backend could not be asked (Redis down, breaker open): a miss by necessity."""

    @property
    def is_hit(self) -> bool:
        """Whether a cached response can be served."""
        return self.hit is not None


@dataclass(frozen=True, slots=True)
class CacheItem:
    """One entry for `put_many`: warm-up and benchmarks fill a cache in bulk."""

    key: CacheKey
    vector: QueryVector | None
    entities: frozenset[str]
    payload: bytes
    cost_ms: float = 0.0
    evidence: Evidence = ()


@runtime_checkable
class Cache(Protocol):
    """Exact, canonical and semantic query cache over opaque serialized responses.

    Backend failures never raise out of these methods: lookups miss, puts are dropped. Caller
    errors (a malformed vector) raise `ValueError`.
    """

    @property
    def backend(self) -> str:
        """'memory' or 'redis'."""
        ...

    async def start(self) -> None:
        """Prepare the backend (eviction policy, catch up on shared entries); never raises."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def get_exact(self, key: CacheKey) -> CacheLookup:
        """Same normalised query, filters, mode, route, config and kb_version."""
        ...

    async def get_canonical(self, key: CacheKey) -> CacheLookup:
        """Same canonical form (tokens and guard sets), filters, mode, route, config and kb_version."""
        ...

    async def get_semantic(
        self,
        key: CacheKey,
        vector: QueryVector,
        entities: Set[str],
        *,
        evidence: EvidenceSource | None = None,
    ) -> CacheLookup:
        """Closest guard-passing cached query in the key's partition, by cosine.

        At or above `semantic_threshold` a candidate is served on its cosine; from
        `verify_threshold` up to it, only when `evidence(depth)` (the query's own sparse top-k)
        overlaps the candidate's stored evidence enough. Without `evidence` the band is closed.
        """
        ...

    async def put(
        self,
        key: CacheKey,
        vector: QueryVector | None,
        entities: Set[str],
        payload: bytes,
        cost_ms: float,
        *,
        kb_version: int | None = None,
        evidence: Evidence = (),
    ) -> bool:
        """Store a response (without a vector it is only reachable by the exact and canonical tiers).

        `kb_version` is the version the preceding lookup reported; a put made under an older
        version is dropped. `evidence` is the answer's top document ids (what a verified semantic
        hit is checked against). Returns whether the entry was stored.
        """
        ...

    async def bump_version(self) -> int:
        """Invalidate every entry (call after each ingest or delete); returns the new kb_version."""
        ...

    async def status(self) -> dict[str, Any]:
        """Health, configuration, version and counters, for readiness and metrics endpoints."""
        ...

    def metrics(self) -> dict[str, Any]:
        """Counters: hits per tier, misses, guard rejections by reason, errors, time saved."""
        ...
