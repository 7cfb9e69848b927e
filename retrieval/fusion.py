"""Weighted Reciprocal Rank Fusion, with an explanation for every fused hit.

    fused(d) = sum over retrievers r of  w_r / (k + rank_r(d))      (ranks start at 1)

A retriever that did not return d contributes nothing. Ties on the fused score are broken by the
best single-retriever rank, then by chunk id, so the order is fully deterministic (stable paging).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from retrieval.types import FusedHit, SourceEvidence, StoredHit


class Fuser(Protocol):
    """Combines ranked lists from several retrievers into one."""

    def fuse(
        self, ranked: Mapping[str, Sequence[StoredHit]], weights: Mapping[str, float] | None = None
    ) -> list[FusedHit]:
        """Fuse lists keyed by retriever name ("dense", "sparse")."""
        ...


@dataclass(frozen=True)
class WeightedRRF:
    """Weighted RRF with an explicit k (default 60, as in Cormack et al. 2009)."""

    k: int = 60
    weights: Mapping[str, float] = field(default_factory=lambda: {"dense": 1.0, "sparse": 1.0})

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError("RRF k must be >= 0")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("RRF weights must be >= 0")

    def fuse(
        self, ranked: Mapping[str, Sequence[StoredHit]], weights: Mapping[str, float] | None = None
    ) -> list[FusedHit]:
        """Fuse; `weights` overrides the configured ones per call (routing uses it)."""
        use = {**self.weights, **(weights or {})}
        scores: dict[str, float] = {}
        stored: dict[str, StoredHit] = {}
        evidence: dict[str, dict[str, SourceEvidence]] = {}
        for source, hits in ranked.items():
            weight = use.get(source, 1.0)
            seen: set[str] = set()
            for rank, hit in enumerate(hits, start=1):
                if hit.id in seen:  # a retriever listing a chunk twice counts once, at its best rank
                    continue
                seen.add(hit.id)
                contribution = weight / (self.k + rank)
                scores[hit.id] = scores.get(hit.id, 0.0) + contribution
                stored.setdefault(hit.id, hit)
                evidence.setdefault(hit.id, {})[source] = SourceEvidence(rank, hit.score, contribution)

        def order(chunk_id: str) -> tuple[float, int, str]:
            best_rank = min(e.rank for e in evidence[chunk_id].values())
            return (-scores[chunk_id], best_rank, chunk_id)

        return [FusedHit(stored[cid], scores[cid], evidence[cid]) for cid in sorted(scores, key=order)]
