"""The vector store role: chunks with a dense and a sparse vector, searched either way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from retrieval.types import ChunkRecord, CollectionInfo, SearchFilter, SparseVector, StoredHit, StoredTerms


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
