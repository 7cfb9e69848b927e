"""The vector store role: chunks with a dense and a sparse vector, searched either way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from retrieval.sparse.bm25 import SparseVector
from retrieval.store.filters import SearchFilter


class StoreError(RuntimeError):
    """The store failed or cannot be reached."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (timeout, connection refused); retry later."""


class ModelMismatch(StoreError):
    """The collection was built by another embedding model or dimension."""


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


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What a collection records about how it was built."""

    name: str
    model_id: str
    dim: int
    rows: int


class VectorStore(Protocol):
    """Chunks in one collection, searchable by dense and by sparse vector."""

    async def open(self, model_id: str, dim: int) -> CollectionInfo:
        """Create the collection or check that it was built by this model; raises ModelMismatch."""
        ...

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        """Insert or replace chunks by id."""
        ...

    async def delete(self, chunk_ids: Sequence[str]) -> None:
        """Remove chunks by id."""
        ...

    async def chunk_terms(self, doc_ids: Sequence[str]) -> list[StoredTerms]:
        """BM25 bookkeeping of every stored chunk of these documents."""
        ...

    async def search_dense(
        self, vector: npt.NDArray[np.float32], limit: int, where: SearchFilter
    ) -> list[StoredHit]:
        """Nearest chunks by cosine similarity."""
        ...

    async def search_sparse(self, vector: SparseVector, limit: int, where: SearchFilter) -> list[StoredHit]:
        """Chunks by inner product with a sparse query vector (the BM25 score)."""
        ...

    def iterate_terms(self, batch_size: int = 2000) -> AsyncIterator[list[StoredTerms]]:
        """Every chunk's BM25 bookkeeping, in batches (to rebuild BM25 statistics)."""
        ...

    async def rewrite_sparse(
        self, reweigh: Callable[[StoredTerms], SparseVector], batch_size: int = 500
    ) -> int:
        """Recompute every chunk's sparse vector from its bookkeeping."""
        ...

    async def count(self) -> int:
        """Number of stored chunks."""
        ...

    async def ready(self) -> bool:
        """Whether the store answers now."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
