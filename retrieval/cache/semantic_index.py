"""Cached query vectors, one matrix per partition, searched with a single matrix-vector product.

A partition holds the entries that may answer each other structurally (same filters, mode,
route and config), so a lookup scans only its own rows. Rows are append-only: removal marks a
row dead and a later compaction builds fresh arrays. That keeps every row a running search sees
unchanged, which is what lets a large partition be scanned in a worker thread (numpy releases
the GIL in the einsum loop) while the event loop keeps adding and removing entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from retrieval.cache.config import CacheConfig
from retrieval.cache.guards import GuardSignature, guard_rejection
from retrieval.cache.protocol import Evidence, EvidenceSource, GuardReason

_MIN_CAPACITY = 64


def _scan(
    matrix: npt.NDArray[np.float32], size: int, vector: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Cosine of `vector` with the first `size` rows of `matrix` (rows and vector are unit length).

    einsum, not `matrix @ vector`: the BLAS product wakes OpenBLAS worker threads on every call,
    and on a busy two-core host, where the encoder and the event loop want the same cores, those
    threads made a 50k x 512 scan 2-3x slower (about 24-28 ms median against 10-12 ms for
    einsum's single-threaded SIMD loop at load average 12). The scan is memory-bound, so one
    core is nearly as fast as two even on an idle host.
    """
    sims: npt.NDArray[np.float32] = np.einsum("ij,j->i", matrix[:size], vector)
    return sims


def unit_vector(vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """A query vector as a flat float32 unit vector; raises ValueError on a malformed one.

    Accepts (dim,) or the pipeline's (1, dim). Vectors arrive normalised; normalising again costs
    nothing and makes a dot product a cosine whatever the caller did.
    """
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"expected one query vector of shape (dim,) or (1, dim), got {arr.shape}")
    norm = float(np.linalg.norm(arr))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("query vector must be finite and non-zero")
    return np.ascontiguousarray(arr / norm, dtype=np.float32)


def evidence_overlap(query: Evidence, cached: Evidence, depth: int) -> float:
    """Share of the query's top `depth` documents found among the cached answer's top `depth`.

    0.0 when the query found nothing: no evidence is no agreement.
    """
    mine = list(dict.fromkeys(query))[:depth]
    if not mine:
        return 0.0
    theirs = set(list(dict.fromkeys(cached))[:depth])
    return sum(doc in theirs for doc in mine) / len(mine)


@dataclass(frozen=True, slots=True)
class Verification:
    """How the band below the trusted threshold is checked: the query's evidence and the bar."""

    threshold: float
    """Lowest cosine a verified candidate may have."""
    evidence: EvidenceSource
    min_overlap: float
    depth: int

    @classmethod
    def of(cls, config: CacheConfig, evidence: EvidenceSource | None) -> Verification | None:
        """A lookup's verified band; None when closed (no evidence offered, or no band configured)."""
        if evidence is None or config.verify_threshold >= config.semantic_threshold:
            return None
        return cls(config.verify_threshold, evidence, config.verify_min_overlap, config.verify_depth)


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """Entries that may answer the query, best first, and why the best refused one was refused."""

    candidates: list[tuple[str, float]] = field(default_factory=list)
    """(entry id, cosine) of candidates above the threshold that pass every guard."""
    rejection: GuardReason | None = None
    """Set when no candidate passed: the guard that refused the most similar one."""


class _Partition:
    """Rows of one partition; row i is (matrix[i], ids[i], ...), valid while alive[i]."""

    def __init__(self, dim: int):
        self.dim = dim
        self.matrix = np.empty((_MIN_CAPACITY, dim), dtype=np.float32)
        self.alive = np.zeros(_MIN_CAPACITY, dtype=bool)
        self.versions = np.zeros(_MIN_CAPACITY, dtype=np.int64)
        self.expires = np.zeros(_MIN_CAPACITY, dtype=np.float64)
        self.ids: list[str] = []
        self.signatures: list[GuardSignature | None] = []
        self.evidence: list[tuple[str, ...]] = []
        self.row_of: dict[str, int] = {}
        self.size = 0
        self.dead = 0
        # Bumped whenever rows move, so a search that ran in a thread knows its row numbers are void.
        self.generation = 0

    def _reserve(self, rows: int) -> None:
        capacity = self.matrix.shape[0]
        if rows <= capacity:
            return
        new_capacity = max(rows, capacity * 2)
        # New arrays instead of resize-in-place: a search in a thread may still read the old ones.
        matrix = np.empty((new_capacity, self.dim), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        alive = np.zeros(new_capacity, dtype=bool)
        alive[: self.size] = self.alive[: self.size]
        versions = np.zeros(new_capacity, dtype=np.int64)
        versions[: self.size] = self.versions[: self.size]
        expires = np.zeros(new_capacity, dtype=np.float64)
        expires[: self.size] = self.expires[: self.size]
        self.matrix, self.alive, self.versions, self.expires = matrix, alive, versions, expires

    def add(
        self,
        entry_id: str,
        vector: npt.NDArray[np.float32],
        sig: GuardSignature,
        version: int,
        expires: float,
        evidence: tuple[str, ...] = (),
    ) -> None:
        self.remove(entry_id)
        self._reserve(self.size + 1)
        row = self.size
        self.matrix[row] = vector
        self.alive[row] = True
        self.versions[row] = version
        self.expires[row] = expires
        self.ids.append(entry_id)
        self.signatures.append(sig)
        self.evidence.append(evidence)
        self.row_of[entry_id] = row
        self.size += 1

    def remove(self, entry_id: str) -> bool:
        row = self.row_of.pop(entry_id, None)
        if row is None:
            return False
        self.alive[row] = False
        self.signatures[row] = None
        self.evidence[row] = ()
        self.dead += 1
        return True

    @property
    def live(self) -> int:
        return self.size - self.dead

    def compact(self) -> None:
        keep = np.flatnonzero(self.alive[: self.size])
        capacity = max(_MIN_CAPACITY, len(keep) * 2)
        matrix = np.empty((capacity, self.dim), dtype=np.float32)
        matrix[: len(keep)] = self.matrix[keep]
        alive = np.zeros(capacity, dtype=bool)
        alive[: len(keep)] = True
        versions = np.zeros(capacity, dtype=np.int64)
        versions[: len(keep)] = self.versions[keep]
        expires = np.zeros(capacity, dtype=np.float64)
        expires[: len(keep)] = self.expires[keep]
        self.ids = [self.ids[i] for i in keep]
        self.signatures = [self.signatures[i] for i in keep]
        self.evidence = [self.evidence[i] for i in keep]
        self.row_of = {entry_id: row for row, entry_id in enumerate(self.ids)}
        self.matrix, self.alive, self.versions, self.expires = matrix, alive, versions, expires
        self.size = len(keep)
        self.dead = 0
        self.generation += 1

    def maybe_compact(self) -> None:
        # Amortised: only when dead rows outnumber live ones (and are worth the copy).
        if self.dead > 1024 and self.dead > self.live:
            self.compact()


class SemanticIndex:
    """Query vectors of cached entries, by partition, with their guard sets, versions and expiry.

    `max_rows` bounds the whole index (oldest rows go first); `offload_rows` is the partition size
    from which a search runs in a worker thread instead of on the event loop.
    """

    def __init__(self, *, max_rows: int | None = None, offload_rows: int = 8192):
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be positive")
        if offload_rows < 1:
            raise ValueError("offload_rows must be positive")
        self.max_rows = max_rows
        self.offload_rows = offload_rows
        self._partitions: dict[str, _Partition] = {}
        # Insertion order doubles as age order for the max_rows bound.
        self._where: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    @property
    def partitions(self) -> int:
        """Number of partitions holding at least one row."""
        return sum(1 for p in self._partitions.values() if p.live)

    def add(
        self,
        entry_id: str,
        partition: str,
        vector: npt.NDArray[np.float32],
        signature: GuardSignature,
        version: int,
        expires_at: float,
        evidence: Evidence = (),
    ) -> None:
        """Insert or replace an entry's row; `vector` must be a unit vector (see `unit_vector`).

        `evidence` is the cached answer's top document ids, checked by verified lookups.
        """
        part = self._partitions.get(partition)
        if part is not None and part.dim != vector.shape[0]:
            raise ValueError(f"vector of dim {vector.shape[0]} in a partition of dim {part.dim}")
        self.remove(entry_id)  # may empty (and drop) the partition, so look it up again below
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition(vector.shape[0])
        part.add(entry_id, vector, signature, version, expires_at, tuple(evidence))
        self._where[entry_id] = partition
        if self.max_rows is not None:
            while len(self._where) > self.max_rows:
                self.remove(next(iter(self._where)))

    def remove(self, entry_id: str) -> bool:
        """Forget an entry (evicted, expired, overwritten); returns whether it was present."""
        partition = self._where.pop(entry_id, None)
        if partition is None:
            return False
        part = self._partitions[partition]
        part.remove(entry_id)
        if not part.live:
            del self._partitions[partition]
        else:
            part.maybe_compact()
        return True

    def remove_many(self, entry_ids: Sequence[str]) -> int:
        """Forget several entries; returns how many were present."""
        return sum(self.remove(entry_id) for entry_id in entry_ids)

    def clear(self) -> None:
        """Forget everything."""
        self._partitions.clear()
        self._where.clear()

    def purge(self, *, now: float, min_version: int | None = None) -> int:
        """Drop rows expired at `now` or written under a version older than `min_version`."""
        stale: list[str] = []
        for part in self._partitions.values():
            used = slice(0, part.size)
            dead = part.alive[used] & (part.expires[used] <= now)
            if min_version is not None:
                dead |= part.alive[used] & (part.versions[used] < min_version)
            stale.extend(part.ids[i] for i in np.flatnonzero(dead))
        return self.remove_many(stale)

    async def search(
        self,
        partition: str,
        vector: npt.NDArray[np.float32],
        signature: GuardSignature,
        *,
        version: int,
        threshold: float,
        now: float,
        limit: int = 3,
        verification: Verification | None = None,
    ) -> SemanticMatch:
        """Up to `limit` live, current-version entries with cosine >= threshold that pass the guards.

        With `verification`, candidates from `verification.threshold` up to `threshold` qualify
        too, when the query's evidence (awaited once, on the first such candidate) overlaps
        theirs by at least `min_overlap`; a shortfall is reported as rejection "evidence".
        """
        floor = threshold if verification is None else min(threshold, verification.threshold)
        part = self._partitions.get(partition)
        if part is None or not part.live:
            return SemanticMatch()
        if part.dim != vector.shape[0]:
            raise ValueError(f"query vector of dim {vector.shape[0]} in a partition of dim {part.dim}")
        size, generation, matrix = part.size, part.generation, part.matrix
        if size >= self.offload_rows:
            sims = await asyncio.to_thread(_scan, matrix, size, vector)
            if part.generation != generation:  # compacted meanwhile: row numbers moved
                sims = _scan(part.matrix, part.size, vector)
        else:
            sims = _scan(matrix, size, vector)
        size = sims.shape[0]
        eligible = (
            (sims >= floor)
            & part.alive[:size]
            & (part.versions[:size] == version)
            & (part.expires[:size] > now)
        )
        rows = np.flatnonzero(eligible)
        if rows.size == 0:
            return SemanticMatch()
        rows = rows[np.argsort(-sims[rows], kind="stable")]
        # Row data read before any await: the evidence source may yield to the event loop, which
        # can remove or compact rows meanwhile.
        rows_data = [
            (part.ids[row], float(sims[row]), part.signatures[row], part.evidence[row]) for row in rows
        ]
        passing: list[tuple[str, float]] = []
        rejection: GuardReason | None = None
        mine: Evidence | None = None
        for entry_id, similarity, cached, theirs in rows_data:
            if cached is None:
                continue
            reason = guard_rejection(cached, signature)
            if reason is None and similarity < threshold:
                assert verification is not None  # the floor is below threshold only with it
                if mine is None:
                    mine = await verification.evidence(verification.depth)
                agree = evidence_overlap(mine, theirs, verification.depth) >= verification.min_overlap
                reason = None if agree else "evidence"
            if reason is None:
                passing.append((entry_id, similarity))
                if len(passing) >= limit:
                    break
            elif rejection is None and not passing:
                rejection = reason
        return SemanticMatch(passing, None if passing else rejection)
