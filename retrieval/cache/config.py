"""Cache settings: one frozen dataclass for both backends (the Redis fields are ignored in memory)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CacheConfig:
    """How the query cache behaves; validated on construction (`ValueError`)."""

    enabled: bool = True
    """False: no cache at all (every search computed)."""
    redis_url: str = ""
    """Empty: the in-process cache. Otherwise a redis:// URL shared by every API worker."""
    ttl_s: float = 3600.0
    """Lifetime of an entry; also bounds how stale a response can be if a version bump is lost."""
    max_entries: int = 10_000
    """In memory: the LFU bound. With Redis: the bound of each worker's local vector matrix."""
    semantic_threshold: float = 0.999
    """Cosine between query vectors from which a semantic hit is served on the vectors alone
    (guards apply on top)."""
    verify_threshold: float = 0.99
    """Lower cosine from which a guard-passing candidate is served if the query's own sparse
    top-k overlaps the candidate's answer (`verify_min_overlap`); at or above `semantic_threshold`,
    no candidate is verified."""
    verify_min_overlap: float = 1.0
    """Share of the query's sparse top `verify_depth` documents that must be among the cached
    answer's top `verify_depth` documents."""
    verify_depth: int = 10
    """Depth of both evidence lists compared by the verified band."""
    canonical: bool = True
    """False: the canonical-form tier neither serves nor stores."""
    socket_timeout_s: float = 0.05
    """Per Redis socket operation; a whole round trip is capped at three times this."""
    breaker_failures: int = 5
    """Consecutive Redis failures that open the circuit."""
    breaker_cooldown_s: float = 5.0
    """How long an open circuit refuses calls before one probe is let through."""
    key_prefix: str = "search:cache:"
    """Namespace of every Redis key, so several deployments or tests can share one server."""
    eviction_policy: str = "allkeys-lfu"
    """Requested with CONFIG SET at start ('' leaves the server's policy alone)."""
    sync_batch: int = 100
    """Stream records (other workers' puts) a lookup reads at most; a full batch hands the rest to a
    background catch-up, so lookups stay small round trips."""
    offload_rows: int = 8192
    """Partition size from which the semantic scan runs in a thread instead of on the event loop."""
    max_payload_bytes: int = 1 << 20
    """Responses larger than this are not cached."""
    warn_interval_s: float = 30.0
    """Minimum time between two backend-failure warnings in the log."""

    def __post_init__(self) -> None:
        for name in ("ttl_s", "socket_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in (
            "max_entries",
            "breaker_failures",
            "sync_batch",
            "offload_rows",
            "max_payload_bytes",
            "verify_depth",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not (0.0 < self.semantic_threshold <= 1.0):
            raise ValueError(f"semantic_threshold must be in (0, 1], got {self.semantic_threshold!r}")
        if not (0.0 < self.verify_threshold <= 1.0):
            raise ValueError(f"verify_threshold must be in (0, 1], got {self.verify_threshold!r}")
        if not (0.0 < self.verify_min_overlap <= 1.0):
            raise ValueError(f"verify_min_overlap must be in (0, 1], got {self.verify_min_overlap!r}")
        if self.breaker_cooldown_s < 0 or self.warn_interval_s < 0:
            raise ValueError("breaker_cooldown_s and warn_interval_s must not be negative")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
