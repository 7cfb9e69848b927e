"""The embedded default: an in-process LFU cache with TTL, a canonical-form tier, and a semantic
tier over a numpy matrix.

One process, one event loop: no locks are needed because nothing awaits between reading and
writing the entry table (only the semantic scan of a large partition awaits a thread, and its
result is re-checked against the table afterwards).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from retrieval.cache.config import CacheConfig
from retrieval.cache.guards import guard_signature
from retrieval.cache.metrics import CacheMetrics
from retrieval.cache.protocol import (
    CacheHit,
    CacheItem,
    CacheKey,
    CacheLookup,
    Evidence,
    EvidenceSource,
    QueryVector,
)
from retrieval.cache.semantic_index import SemanticIndex, Verification, unit_vector


@dataclass(slots=True)
class _Entry:
    payload: bytes
    cost_ms: float
    expires_at: float
    seq: int
    """Insertion order: among equally frequent entries the oldest is evicted first."""
    hits: int = 0


class MemoryCache:
    """Bounded LFU cache (ties broken by age) with TTL, exact, canonical and semantic tiers.

    A canonical form points at the entry last stored under it, so the two tiers share one payload
    and one LFU count.

    A version bump empties it: entries of an older knowledge base are never served, so there is
    no reason to keep them.
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config or CacheConfig()
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        # canonical digest -> entry digest, and back (to forget the pointer with its entry).
        self._canonical: dict[str, str] = {}
        self._canonical_of: dict[str, str] = {}
        # Lazy LFU heap of (hits, seq, entry id): a hit pushes a fresh tuple; stale ones are skipped.
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._index = SemanticIndex(offload_rows=self.config.offload_rows)
        self._version = 0
        self._last_sweep = clock()
        self._metrics = CacheMetrics("memory", registry, gauges=self._gauges)

    @property
    def backend(self) -> str:
        """Always 'memory'."""
        return "memory"

    def __len__(self) -> int:
        return len(self._entries)

    async def start(self) -> None:
        """Nothing to prepare in process."""

    async def close(self) -> None:
        """Drop every entry."""
        self._clear()

    # -- lookups ---------------------------------------------------------------------------
    async def get_exact(self, key: CacheKey) -> CacheLookup:
        """Same normalised query, filters, mode, route and config, under the current version."""
        digest = key.digest
        entry = self._live(digest)
        if entry is None:
            self._metrics.miss("exact")
            return CacheLookup(None, self._version)
        self._touch(digest, entry)
        self._metrics.hit("exact", entry.cost_ms)
        return CacheLookup(CacheHit("exact", entry.payload, 1.0, entry.cost_ms), self._version)

    async def get_canonical(self, key: CacheKey) -> CacheLookup:
        """The entry last stored under the same canonical form, under the current version."""
        digest = self._canonical.get(key.canonical_digest) if self.config.canonical else None
        entry = self._live(digest) if digest is not None else None
        if digest is None or entry is None:
            self._metrics.miss("canonical")
            return CacheLookup(None, self._version)
        self._touch(digest, entry)
        self._metrics.hit("canonical", entry.cost_ms)
        return CacheLookup(CacheHit("canonical", entry.payload, 1.0, entry.cost_ms), self._version)

    async def get_semantic(
        self,
        key: CacheKey,
        vector: QueryVector,
        entities: Set[str],
        *,
        evidence: EvidenceSource | None = None,
    ) -> CacheLookup:
        """The most similar cached query of the key's partition that passes every guard."""
        query = unit_vector(vector)
        version = self._version
        match = await self._index.search(
            key.partition,
            query,
            guard_signature(key.query, entities),
            version=version,
            threshold=self.config.semantic_threshold,
            now=self._clock(),
            verification=Verification.of(self.config, evidence),
        )
        if version == self._version:  # a bump while the scan ran in a thread voids its candidates
            for entry_id, similarity in match.candidates:
                entry = self._live(entry_id)
                if entry is not None:
                    self._touch(entry_id, entry)
                    self._metrics.hit("semantic", entry.cost_ms)
                    hit = CacheHit("semantic", entry.payload, similarity, entry.cost_ms)
                    return CacheLookup(hit, version)
        self._metrics.miss("semantic")
        if match.rejection is not None:
            self._metrics.rejected(match.rejection)
        return CacheLookup(None, self._version, match.rejection)

    # -- writes ----------------------------------------------------------------------------
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
        """Store a response; dropped when `kb_version` is not the current version or it is too large."""
        if kb_version is not None and kb_version != self._version:
            self._metrics.dropped_puts["stale_version"] += 1
            return False
        if len(payload) > self.config.max_payload_bytes:
            self._metrics.dropped_puts["too_large"] += 1
            return False
        unit = unit_vector(vector) if vector is not None else None  # validate before mutating
        digest = key.digest
        now = self._clock()
        expires_at = now + self.config.ttl_s
        entry = self._entries.get(digest)
        if entry is not None:
            # Same question answered again (two concurrent misses): keep its popularity and age.
            entry.payload, entry.cost_ms, entry.expires_at = payload, cost_ms, expires_at
        else:
            self._make_room(now)
            seq = next(self._seq)
            self._entries[digest] = _Entry(payload, cost_ms, expires_at, seq)
            heapq.heappush(self._heap, (0, seq, digest))
        if unit is not None:
            signature = guard_signature(key.query, entities)
            self._index.add(digest, key.partition, unit, signature, self._version, expires_at, evidence)
        if key.canonical and self.config.canonical:
            canonical = key.canonical_digest
            if (previous := self._canonical.get(canonical)) is not None:
                self._canonical_of.pop(previous, None)
            if (stale := self._canonical_of.pop(digest, None)) is not None:
                self._canonical.pop(stale, None)
            self._canonical[canonical] = digest
            self._canonical_of[digest] = canonical
        self._metrics.puts += 1
        return True

    async def put_many(self, items: Iterable[CacheItem]) -> int:
        """Store several entries under the current version; returns how many were stored."""
        stored = 0
        for item in items:
            stored += await self.put(
                item.key, item.vector, item.entities, item.payload, item.cost_ms, evidence=item.evidence
            )
        return stored

    async def bump_version(self) -> int:
        """Advance kb_version and drop every entry (none of them may be served any more)."""
        self._version += 1
        self._clear()
        return self._version

    # -- reporting -------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """Health, settings, version and counters."""
        return {
            "backend": "memory",
            "available": True,
            "kb_version": self._version,
            "entries": len(self._entries),
            "semantic_entries": len(self._index),
            "semantic_partitions": self._index.partitions,
            "max_entries": self.config.max_entries,
            "ttl_s": self.config.ttl_s,
            "canonical_entries": len(self._canonical),
            "semantic_threshold": self.config.semantic_threshold,
            "verify_threshold": self.config.verify_threshold,
            "metrics": self._metrics.snapshot(),
        }

    def metrics(self) -> dict[str, Any]:
        """Counters: hits per tier, misses, guard rejections by reason, time saved."""
        return self._metrics.snapshot()

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry the counters are exposed on."""
        return self._metrics.registry

    # -- internals -------------------------------------------------------------------------
    def _gauges(self) -> dict[str, float]:
        return {"entries": float(len(self._entries)), "kb_version": float(self._version)}

    def _live(self, digest: str) -> _Entry | None:
        entry = self._entries.get(digest)
        if entry is not None and entry.expires_at <= self._clock():
            self._drop(digest)
            return None
        return entry

    def _touch(self, digest: str, entry: _Entry) -> None:
        entry.hits += 1
        heapq.heappush(self._heap, (entry.hits, entry.seq, digest))
        if len(self._heap) > 2 * len(self._entries) + 64:
            # Superseded tuples pile up with hits; rebuild from the table to bound the heap.
            self._heap = [(e.hits, e.seq, d) for d, e in self._entries.items()]
            heapq.heapify(self._heap)

    def _drop(self, digest: str) -> None:
        del self._entries[digest]
        self._index.remove(digest)
        if (canonical := self._canonical_of.pop(digest, None)) is not None:
            self._canonical.pop(canonical, None)

    def _make_room(self, now: float) -> None:
        if len(self._entries) < self.config.max_entries:
            return
        if now - self._last_sweep >= min(self.config.ttl_s, 1.0):
            # Expired entries go before live ones, whatever their popularity; the O(n) sweep is
            # rate-limited so a full cache of live entries does not pay it on every put.
            self._last_sweep = now
            for digest in [d for d, e in self._entries.items() if e.expires_at <= now]:
                self._drop(digest)
        while len(self._entries) >= self.config.max_entries and self._heap:
            hits, seq, digest = heapq.heappop(self._heap)
            entry = self._entries.get(digest)
            if entry is not None and entry.hits == hits and entry.seq == seq:
                self._drop(digest)

    def _clear(self) -> None:
        self._entries.clear()
        self._canonical.clear()
        self._canonical_of.clear()
        self._heap.clear()
        self._index.clear()
