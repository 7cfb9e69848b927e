"""A collection that has just become live, still answering for the one it replaced (reindex swaps)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.store.milvus import MilvusStore
from retrieval.store.protocol import VectorStore
from retrieval.types import SearchFilter, StoredHit


class HandoverStore(MilvusStore):
    """A collection that has just become live, still able to answer for the one it replaced.

    A search embeds its query and then searches whatever store the pipeline holds by then. Across a
    model swap that is the new collection with a vector from the old model: with another dimension
    Milvus refuses it. Such a vector is answered by the retiring collection instead, which is the
    answer the search would have had a moment earlier. (With equal dimensions nothing can tell the
    two models' vectors apart; that search gets dense hits of mixed provenance, once.)
    """

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        retiring: VectorStore | None = None,
        **options: Any,
    ):
        super().__init__(uri, collection, **options)
        self.retiring = retiring

    def take_over(self, retiring: VectorStore) -> VectorStore | None:
        """Answer for `retiring` from now on; returns its own predecessor, which the caller closes.

        A search that embedded its query two swaps ago has long finished, so one generation is kept.
        """
        older = retiring.retiring if isinstance(retiring, HandoverStore) else None
        if isinstance(retiring, HandoverStore):
            retiring.retiring = None
        self.retiring = retiring
        return older

    async def search_dense(
        self, vector: npt.NDArray[np.float32], limit: int, where: SearchFilter
    ) -> list[StoredHit]:
        """Nearest chunks; a vector of the retiring collection's dimension is answered there."""
        retiring = self.retiring
        size = int(np.asarray(vector).shape[-1])
        if retiring is not None and size != self._dim and size == retiring.dim:
            return await retiring.search_dense(vector, limit, where)
        return await super().search_dense(vector, limit, where)

    async def close(self) -> None:
        """Close this collection's clients and the retiring collection's."""
        try:
            await super().close()
        finally:
            retiring, self.retiring = self.retiring, None
            if retiring is not None:
                await retiring.close()
