"""What switching collections keeps on disk and reports: paths, checkpoints, summaries, reports."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from retrieval.encoders.protocol import Encoder
from retrieval.errors import ReindexError
from retrieval.settings import Settings
from retrieval.store.pointer import check_collection_name
from retrieval.util import read_json_record, write_json_atomic

REINDEX_JOURNAL = "reindex"
"""Writes since the current reindex started (replayed into its target before the swap)."""
ROLLBACK_JOURNAL = "rollback"
"""Writes since the last swap (replayed into the previous collection by a rollback)."""

ProgressCallback = Callable[[int, int], None]
"""Called with (chunks copied so far, chunks in the live collection) after every batch."""


@dataclass(frozen=True)
class ReindexPaths:
    """The files a reindex keeps beside the pointer file."""

    folder: Path
    logical: str

    @classmethod
    def for_settings(cls, settings: Settings) -> ReindexPaths:
        """The paths for the configured logical collection."""
        return cls(settings.collections_dir, settings.store.collection)

    @property
    def checkpoint(self) -> Path:
        """Target and progress of a reindex not yet swapped in."""
        return self.folder / f"{self.logical}.reindex.json"

    @property
    def reindex_journal(self) -> Path:
        """Documents written since that reindex started."""
        return self.folder / f"{self.logical}.reindex.journal"

    @property
    def rollback_journal(self) -> Path:
        """Documents written since the last swap."""
        return self.folder / f"{self.logical}.rollback.journal"


@dataclass
class Checkpoint:
    """How far a reindex got: rows up to and including `last_id` (primary-key order) are copied."""

    target: str
    spec: str
    model_id: str
    dim: int
    source: str
    started_at: str
    last_id: str | None = None
    copied: int = 0

    def matches(self, spec: str, model_id: str, dim: int, source: str) -> bool:
        """Whether a reindex with these parameters may continue this one."""
        return (self.spec, self.model_id, self.dim, self.source) == (spec, model_id, dim, source)

    def save(self, path: Path) -> None:
        """Write atomically (a crash leaves the previous checkpoint, never half of one)."""
        write_json_atomic(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint in `path`, or None when there is none."""
        try:
            return read_json_record(path, cls, "reindex checkpoint")
        except ValueError as exc:
            raise ReindexError(str(exc)) from exc


@dataclass(frozen=True)
class ReindexReport:
    """What a reindex did."""

    source: str
    target: str
    spec: str
    model_id: str
    dim: int
    rows: int
    """Chunks in the new collection at the swap."""
    copied: int
    """Chunks this run copied (those an interrupted run had copied are not copied again)."""
    resumed_from: int
    """Chunks an interrupted earlier run had copied already."""
    replayed_documents: int
    took_s: float
    retired_encoder: Encoder = field(repr=False)
    """The encoder the kb used before; not closed (in-flight searches, a rollback)."""


@dataclass(frozen=True)
class RollbackReport:
    """What a rollback did."""

    active: str
    replaced: str
    model_id: str
    dim: int
    replayed_documents: int
    retired_encoder: Encoder = field(repr=False)


@dataclass(frozen=True)
class CollectionSummary:
    """A physical collection as the pointer and the collection itself describe it."""

    name: str
    spec: str | None
    """Encoder spec recorded when it became live (None for the first collection)."""
    model_id: str | None
    """Model id recorded in the collection (None when it does not exist yet)."""
    dim: int


def collection_name(logical: str, spec: str, now: datetime | None = None) -> str:
    """``<logical>__<spec slug>__<UTC timestamp>``: only letters, digits and underscores."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", spec).strip("_").lower()[:48] or "model"
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return check_collection_name(f"{logical}__{slug}__{stamp}")
