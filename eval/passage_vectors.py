"""Passage vectors kept on disk, keyed by the exact text the knowledge base embeds.

Encoding 300k passages with the served model takes hours on 2 cores; the scale benchmarks must
not pay that on every run. The cache is a folder per model id of shards (`part-*.npz`: SHA-1 of
each text, its vector), written whole and renamed into place, so an interrupted run keeps every
shard it finished and a rerun encodes only what is missing.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from eval.synthetic import PassageStandIn
from retrieval.encoders.protocol import Encoder
from retrieval.settings import PROJECT_ROOT
from retrieval.types import Vectors

DEFAULT_ROOT = PROJECT_ROOT / "data" / "passage-vectors"
_DIGEST_BYTES = 20


def text_key(text: str) -> bytes:
    """The cache key of one passage text."""
    return hashlib.sha1(text.encode("utf-8")).digest()


class VectorCache:
    """Vectors of one model, looked up by passage text."""

    def __init__(self, folder: Path, dim: int):
        self.folder, self.dim = folder, dim
        self._rows: dict[bytes, int] = {}
        parts: list[npt.NDArray[np.float32]] = []
        position = 0
        for shard in sorted(folder.glob("part-*.npz")):
            with np.load(shard) as data:
                vectors = data["vectors"].astype(np.float32)
                if vectors.ndim != 2 or vectors.shape[1] != dim:
                    raise ValueError(f"{shard}: vectors of shape {vectors.shape}, expected (n, {dim})")
                for key in data["keys"]:
                    # A text in two shards (two runs at once) keeps its first row. NumPy's fixed
                    # bytes type drops trailing NUL bytes on reading: pad the digest back.
                    self._rows.setdefault(bytes(key).ljust(_DIGEST_BYTES, b"\0"), position)
                    position += 1
                parts.append(vectors)
        self._matrix = np.vstack(parts) if parts else np.zeros((0, dim), np.float32)
        self._pending_keys: list[bytes] = []
        self._pending: list[npt.NDArray[np.float32]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def lookup_rows(self, n: int) -> Vectors:
        """The first `n` stored vectors, in the order they were written (a sample for benchmarks)."""
        return np.array(self._matrix[:n], dtype=np.float32)

    def missing(self, texts: Sequence[str]) -> list[int]:
        """Positions of the texts that have no vector yet."""
        return [i for i, t in enumerate(texts) if text_key(t) not in self._rows]

    def lookup(self, texts: Sequence[str]) -> Vectors:
        """Vectors of texts that all have one (KeyError otherwise)."""
        rows = [self._rows[text_key(t)] for t in texts]
        return self._matrix[rows] if rows else np.zeros((0, self.dim), np.float32)

    def add(self, texts: Sequence[str], vectors: Vectors) -> None:
        """Remember vectors (kept in memory until `flush`)."""
        fresh = [(text_key(t), v) for t, v in zip(texts, vectors, strict=True)]
        fresh = [(k, v) for k, v in fresh if k not in self._rows]
        if not fresh:
            return
        block = np.stack([v for _, v in fresh]).astype(np.float32)
        for offset, (key, _) in enumerate(fresh):
            self._rows[key] = len(self._matrix) + offset
        self._matrix = np.vstack([self._matrix, block])
        self._pending_keys.extend(k for k, _ in fresh)
        self._pending.append(block)

    def flush(self) -> None:
        """Write what was added since the last flush as one new shard."""
        if not self._pending_keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self._matrix):09d}-{uuid.uuid4().hex[:6]}"
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(
            tmp,
            keys=np.array(self._pending_keys, dtype=f"S{_DIGEST_BYTES}"),
            vectors=np.vstack(self._pending),
        )
        os.replace(tmp, self.folder / f"{name}.npz")
        self._pending_keys, self._pending = [], []


class CachedPassages(PassageStandIn):
    """The real model's passage vectors, from the cache where it has them, encoded otherwise."""

    def __init__(self, real: Encoder, cache: VectorCache):
        super().__init__(real)
        self.cache = cache

    async def encode_passages(self, texts: list[str]) -> Vectors:
        todo = self.cache.missing(texts)
        if todo:
            missing = [texts[i] for i in todo]
            self.cache.add(missing, await self.real.encode_passages(missing))
            self.cache.flush()
        return self.cache.lookup(texts)
