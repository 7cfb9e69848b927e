"""The local encoder: an ONNX (INT8 by default) BERT model run by ONNX Runtime off the event loop.

Concurrent query calls are micro-batched (`retrieval.batching`): a query that finds the model
idle runs at once (after `batch_window_ms`, 0 by default, for callers who prefer to gather);
queries that arrive while a run is in flight share the next run. A batch costs little more than a
single query, so throughput rises under load, and a lone query never waits for company.

Models trained with instruction prefixes (e5: ``"query: "`` / ``"passage: "``) get them from their
registry entry through the built model's manifest; the encoder prepends them to every query and
passage, so callers always pass bare text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from retrieval.batching import MicroBatcher
from retrieval.encoders.pooling import l2_normalize, mean_pool
from retrieval.encoders.session import create_session
from retrieval.encoders.tokenization import encode_batch, load_tokenizer
from retrieval.types import Vectors


class OnnxEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from an exported BERT-family model."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        model_id: str,
        max_length: int = 512,
        intra_op_threads: int = 2,
        batch_window_ms: float = 0.0,
        max_batch: int = 32,
        allow_spinning: bool = True,
        query_prefix: str = "",
        passage_prefix: str = "",
    ):
        if max_batch < 1 or batch_window_ms < 0:
            raise ValueError("max_batch must be >= 1 and batch_window_ms >= 0")
        self._model_id = model_id
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._session = create_session(
            model_path, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning
        )
        self._tokenizer = load_tokenizer(tokenizer_path, max_length)
        self._inputs = {i.name for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = "sentence_embedding" if "sentence_embedding" in outputs else outputs[0]
        self._pooled = self._output == "sentence_embedding"
        # One ONNX run at a time: ORT already spreads a run over intra_op_threads, and two runs
        # racing on 2 cores only thrash.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        self._max_batch = max_batch
        self._batcher: MicroBatcher[str, Vectors] = MicroBatcher(
            self._encode_batch, max_batch=max_batch, window_s=batch_window_ms / 1000
        )
        self._dim = int(self._run(["维度"]).shape[1])

    @property
    def model_id(self) -> str:
        """The model's identifier (recorded in every collection it builds)."""
        return self._model_id

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._dim

    async def discover_dim(self) -> int:
        """The dimension (known from the model file)."""
        return self._dim

    def _run(self, texts: Sequence[str]) -> Vectors:
        batch = encode_batch(self._tokenizer, texts)
        feed = {k: v for k, v in batch.as_feed().items() if k in self._inputs}
        (out,) = self._session.run([self._output], feed)
        pooled = out if self._pooled else mean_pool(out, batch.attention_mask)
        return l2_normalize(pooled)

    @property
    def query_prefix(self) -> str:
        """Prepended to each query before tokenising ("" for models trained without one)."""
        return self._query_prefix

    @property
    def passage_prefix(self) -> str:
        """Prepended to each passage before tokenising."""
        return self._passage_prefix

    def encode_queries_sync(self, texts: Sequence[str]) -> Vectors:
        """Blocking :meth:`encode_queries` (query prefix applied), for CLIs and benchmarks."""
        return self.encode_sync([self._query_prefix + t for t in texts])

    def encode_passages_sync(self, texts: Sequence[str]) -> Vectors:
        """Blocking :meth:`encode_passages` (passage prefix applied), for CLIs and benchmarks."""
        return self.encode_sync([self._passage_prefix + t for t in texts])

    def encode_sync(self, texts: Sequence[str]) -> Vectors:
        """Blocking encode of ``texts`` exactly as given (no prefix) in length-sorted batches."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(order), self._max_batch):
            idx = order[start : start + self._max_batch]
            result[idx] = self._run([texts[i] for i in idx])
        return result

    async def encode_passages(self, texts: list[str]) -> Vectors:
        """Embed passages in length-sorted batches, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.encode_passages_sync, texts)

    async def encode_queries(self, texts: list[str]) -> Vectors:
        """Embed queries, sharing an ONNX run with queries that arrive within the batch window."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return await self._batcher.submit([self._query_prefix + t for t in texts])

    async def _encode_batch(self, texts: list[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.encode_sync, texts)

    @property
    def batches_run(self) -> int:
        """ONNX runs that answered `encode_queries` calls (each may answer several)."""
        return self._batcher.runs

    async def ready(self) -> bool:
        """A local model is ready once loaded."""
        return True

    async def close(self) -> None:
        """Stop the executor; pending runs finish first."""
        await self._batcher.close()
        self._executor.shutdown(wait=True)
