"""Value types every role shares. This module imports no role, so any role may import it.

What crosses a role boundary is defined here once: the search mode, vectors, the stored chunk and
what a retriever returns for it, a validated search filter, and a fused (or ranked) hit with the
evidence behind its place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.errors import InvalidFilter


class SearchMode(StrEnum):
    """Which retrievers a search runs."""

    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"


Vectors = npt.NDArray[np.float32]
"""A (n, dim) float32 matrix of L2-normalised embeddings, one row per input text."""

SparseVector = dict[int, float]
"""Milvus sparse vector: term id -> weight (only non-zero, non-negative weights)."""

Scalar = str | int | float | bool

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")
DOC_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
METADATA_KEY_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
# Printable text without quotes or backslashes: enough for names, places and labels, and a value
# of this form can never close the string literal a store renders it into.
SAFE_STRING = re.compile(r'^[^"\\\x00-\x1f\x7f]{0,256}$')
MAX_FILTER_VALUES = 100
MAX_FILTER_KEYS = 16


def check_scalar(value: Scalar, name: str) -> Scalar:
    """`value` if a filter may compare against it; else `InvalidFilter` naming `name`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise InvalidFilter(name, "integer out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilter(name, "number must be finite")
        return value
    if isinstance(value, str):
        if not SAFE_STRING.match(value):
            raise InvalidFilter(name, "text values are at most 256 characters, without quotes or backslashes")
        return value
    raise InvalidFilter(name, f"unsupported value type {type(value).__name__}")


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions on which chunks a search may return (validated; see `build`)."""

    kinds: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    metadata: tuple[tuple[str, Scalar], ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls,
        kinds: str | Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
        metadata: Mapping[str, Scalar] | None = None,
    ) -> SearchFilter:
        """Validate user-supplied parts; raises `InvalidFilter`."""
        kind_list = [kinds] if isinstance(kinds, str) else list(kinds or [])
        ids = list(doc_ids or [])
        meta = dict(metadata or {})
        for name, values in (("kind", kind_list), ("doc_id", ids)):
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidFilter(name, f"at most {MAX_FILTER_VALUES} values")
        for kind in kind_list:
            if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
                raise InvalidFilter("kind", f"invalid kind {kind!r}")
        for doc_id in ids:
            if not isinstance(doc_id, str) or not DOC_ID_PATTERN.match(doc_id):
                raise InvalidFilter("doc_id", f"invalid document id {doc_id!r}")
        if len(meta) > MAX_FILTER_KEYS:
            raise InvalidFilter("metadata", f"at most {MAX_FILTER_KEYS} keys")
        for key, value in meta.items():
            if not METADATA_KEY_PATTERN.match(key):
                raise InvalidFilter("metadata", f"invalid key {key!r}")
            check_scalar(value, f"metadata.{key}")
        return cls(
            kinds=tuple(sorted(set(kind_list))),
            doc_ids=tuple(sorted(set(ids))),
            metadata=tuple(sorted(meta.items())),
        )

    @property
    def is_empty(self) -> bool:
        """No restriction at all."""
        return not (self.kinds or self.doc_ids or self.metadata)


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One chunk as stored: text, provenance, and both vectors."""

    id: str
    doc_id: str
    title: str
    kind: str
    text: str
    chunk_index: int
    metadata: dict[str, Any]
    dense: npt.NDArray[np.float32]
    sparse: SparseVector
    terms: dict[str, list[int]]
    """BM25 bookkeeping: token -> [term id, count]; lets statistics be rebuilt from the store."""
    length: int


@dataclass(frozen=True, slots=True)
class StoredTerms:
    """A stored chunk's BM25 bookkeeping."""

    chunk_id: str
    doc_id: str
    terms: dict[str, list[int]]
    length: int


@dataclass(frozen=True, slots=True)
class StoredHit:
    """One chunk returned by a retriever, with that retriever's score (higher is better)."""

    id: str
    score: float
    doc_id: str = ""
    title: str = ""
    kind: str = ""
    text: str = ""
    chunk_index: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def aliases(self) -> tuple[str, ...]:
        """The document's aliases (kept in metadata by ingest)."""
        return aliases_of(self.metadata)


def aliases_of(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """A stored chunk's aliases: ingest keeps the document's aliases in its metadata."""
    raw = metadata.get("aliases")
    if not raw or not isinstance(raw, list | tuple):
        return ()
    # A list comprehension, not a generator: this runs for every candidate the ranker scores.
    return tuple([a for a in raw if isinstance(a, str)])


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What a collection records about how it was built."""

    name: str
    model_id: str
    dim: int
    rows: int


@dataclass(frozen=True, slots=True)
class SourceEvidence:
    """Where one retriever placed a hit, its score there, and what that added to the fused score."""

    rank: int
    score: float
    contribution: float


@dataclass(frozen=True, slots=True)
class FusedHit:
    """A chunk after fusion or ranking: the stored fields plus per-retriever evidence.

    `contributions` holds a learned ranker's largest per-feature contributions to `score` (empty
    under RRF, whose `sources` already say everything).
    """

    hit: StoredHit
    score: float
    sources: dict[str, SourceEvidence] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)
