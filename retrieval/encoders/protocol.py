"""The one role every dense encoder plays."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from retrieval.types import Vectors


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised dense vectors.

    Queries and passages are separate calls because some models prefix or batch them
    differently; m3e-small treats them the same.
    """

    @property
    def model_id(self) -> str:
        """Stable identifier of the model; a collection built with another id is refused."""
        ...

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        ...

    async def discover_dim(self) -> int:
        """The dimension, asking the model's service first when it is not known yet (remote models)."""
        ...

    async def encode_queries(self, texts: list[str]) -> Vectors:
        """Embed short queries (latency-sensitive; concurrent calls may be micro-batched)."""
        ...

    async def encode_passages(self, texts: list[str]) -> Vectors:
        """Embed passages for indexing (throughput-oriented)."""
        ...

    async def ready(self) -> bool:
        """Whether the encoder can answer now."""
        ...

    async def close(self) -> None:
        """Release sessions, threads or connections."""
        ...
