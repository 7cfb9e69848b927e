"""The vector store role: chunks with a dense and a sparse vector, searched either way."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from retrieval.types import ChunkRecord, CollectionInfo, SearchFilter, SparseVector, StoredHit, StoredTerms


class VectorStore(Protocol):
    """Chunks in one collection, searchable by dense and by sparse vector, and copyable whole.

    The copying half (`iterate_chunks`, `chunks`, `exists`, `drop`, `describe`) is what a reindex
    needs of the live collection and its target.
    """

    @property
    def collection(self) -> str:
        """The physical collection's name."""
        ...

    @property
    def dim(self) -> int:
        """The dense vectors' dimension (0 until `open`)."""
        ...

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

    async def titled(self, titles: Sequence[str], limit: int, where: SearchFilter) -> list[StoredHit]:
        """Chunks of the entries with these titles that `where` allows (score 0; one query)."""
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

    async def exists(self) -> bool:
        """Whether the collection exists."""
        ...

    async def describe(self) -> CollectionInfo:
        """Model id, dimension and rows recorded in the collection."""
        ...

    async def drop(self) -> None:
        """Delete the collection and everything in it."""
        ...

    def iterate_chunks(
        self, *, after: str | None = None, batch_size: int = 256
    ) -> AsyncGenerator[list[ChunkRecord], None]:
        """Every chunk in primary-key order after `after`, in batches, without dense vectors."""
        ...

    async def chunks(self, doc_ids: Sequence[str]) -> list[ChunkRecord]:
        """Every stored chunk of these documents, without dense vectors."""
        ...
