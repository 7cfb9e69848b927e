"""The local encoder: an ONNX (INT8 by default) BERT model run by ONNX Runtime off the event loop.

Concurrent query calls are micro-batched. A query that finds the model idle runs at once (after
`batch_window_ms`, 0 by default, for callers who prefer to gather); queries that arrive while a
run is in flight wait for it and then share the next run. A batch costs little more than a single
query, so throughput rises under load, and a lone query never waits for company that is not there.

Models trained with instruction prefixes (e5: ``"query: "`` / ``"passage: "``) get them from their
registry entry through the built model's manifest; the encoder prepends them to every query and
passage, so callers always pass bare text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.encoders.pooling import l2_normalize, mean_pool
from retrieval.encoders.session import create_session
from retrieval.encoders.tokenization import encode_batch, load_tokenizer
from retrieval.types import Vectors


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[Vectors]


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
        self._window_s = batch_window_ms / 1000
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        # Runs started and not yet ended. Not len(_running): a task leaves that set in a done
        # callback, after the callers it answered have resumed, and a query sent by one of them
        # in between would wait for a run that has already ended.
        self._in_flight = 0
        self._dim = int(self._run(["维度"]).shape[1])
        self.batches_run = 0

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
        loop = asyncio.get_running_loop()
        pending = _Pending([self._query_prefix + t for t in texts], loop.create_future())
        self._queue.append(pending)
        if sum(len(p.texts) for p in self._queue) >= self._max_batch:
            self._flush_now()
        elif self._flusher is None and not self._in_flight:
            # Idle model: go now (or after the configured window). Busy model: the run in
            # flight flushes the queue when it ends, so waiting queries batch by themselves.
            self._flusher = asyncio.create_task(self._flush_later())
        return await pending.future

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._window_s)  # 0 still lets queries of the same loop tick join
        finally:
            self._flusher = None
        self._flush_now()

    def _flush_now(self) -> None:
        batch, self._queue = self._queue, []
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if batch:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            # The loop only keeps weak references to tasks; hold this one until it finishes.
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Pending]) -> None:
        texts = [t for p in batch for t in p.texts]
        loop = asyncio.get_running_loop()
        try:
            vectors = await loop.run_in_executor(self._executor, self.encode_sync, texts)
        except Exception as exc:  # every waiter must hear about the failure
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            self._in_flight -= 1
            if self._queue and self._flusher is None:
                self._flush_now()  # the queries that queued behind this run
        self.batches_run += 1
        offset = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result(vectors[offset : offset + len(p.texts)])
            offset += len(p.texts)

    async def ready(self) -> bool:
        """A local model is ready once loaded."""
        return True

    async def close(self) -> None:
        """Stop the executor; pending runs finish first."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._executor.shutdown(wait=True)
