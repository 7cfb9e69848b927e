"""Bulk ingest of a JSON Lines file: overlapped stages, a checkpoint to resume from, idempotent.

Two stages run at once on consecutive batches of documents:

    prepare (batch i+1): chunk -> embed (ONNX Runtime, its own thread) | jieba + BM25 counts (a thread)
    commit  (batch i):   replace the documents' chunks in the store, count them in the statistics

Every write is an upsert by chunk id that also removes a document's older chunks, so running the
same file again yields the same collection. After each committed batch a checkpoint records the
byte offset reached in the file (with the file's size and modification time, so an edited file
starts over); an interrupted run (Ctrl-C, kill, crash) continues from there. The BM25 statistics
are re-weighted and snapshotted once at the end instead of after every batch; until then the
snapshot stays marked dirty, so a run killed half-way makes the next start recount them from
the store, which holds exactly what was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from retrieval.documents import Document
from retrieval.errors import InvalidDocument
from retrieval.knowledge_base import KnowledgeBase, PreparedIngest
from retrieval.util import read_json_record, write_json_atomic


class IngestCheckpointError(ValueError):
    """The checkpoint file exists but cannot be read."""


@dataclass
class IngestCheckpoint:
    """How far a bulk ingest of one file into one collection got (documents before `offset`)."""

    source: str
    size: int
    mtime_ns: int
    collection: str
    offset: int = 0
    line: int = 0
    documents: int = 0
    chunks: int = 0

    def matches(self, other: IngestCheckpoint) -> bool:
        """Whether this checkpoint describes the same file, unchanged, into the same collection."""
        return (self.source, self.size, self.mtime_ns, self.collection) == (
            other.source,
            other.size,
            other.mtime_ns,
            other.collection,
        )

    def save(self, path: Path) -> None:
        """Write atomically: a kill leaves the previous checkpoint, never half of one."""
        write_json_atomic(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> IngestCheckpoint | None:
        """The checkpoint in `path`, or None when there is none."""
        try:
            return read_json_record(path, cls, "ingest checkpoint")
        except ValueError as exc:
            raise IngestCheckpointError(str(exc)) from exc


def checkpoint_path(folder: Path, source: Path, collection: str) -> Path:
    """Where the checkpoint of ingesting `source` into `collection` lives inside `folder`."""
    key = hashlib.sha256(f"{source.resolve()}\0{collection}".encode()).hexdigest()[:16]
    return folder / f"{collection}.ingest-{key}.json"


@dataclass(frozen=True)
class BulkProgress:
    """Reported after every committed batch."""

    documents: int
    chunks: int
    offset: int
    size: int
    elapsed_s: float


@dataclass(frozen=True)
class BulkReport:
    """What a bulk ingest did."""

    documents: int
    """Documents committed by this run (not counting those a resumed run skipped)."""
    chunks: int
    resumed_documents: int
    """Documents an earlier, interrupted run had committed (0 on a fresh start)."""
    elapsed_s: float

    @property
    def chunks_per_s(self) -> float:
        """End-to-end throughput of this run."""
        return self.chunks / self.elapsed_s if self.elapsed_s > 0 else 0.0


def read_batches(
    path: Path, offset: int, line: int, batch: int, max_chars: int
) -> Iterator[tuple[list[Document], int, int]]:
    """(documents, offset after them, lines read) for each batch from byte `offset` on.

    Lines are validated as they are read: a bad one raises `InvalidDocument` naming its line, and
    the batches before it are committed (the checkpoint then points at the batch that holds it).
    """
    docs: list[Document] = []
    with path.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            offset += len(raw)
            line += 1
            if not raw.strip():
                continue
            try:
                docs.append(Document.from_mapping(json.loads(raw)).validate(max_chars))
            except InvalidDocument as exc:
                raise InvalidDocument(exc.field or "document", f"{path}:{line}: {exc}") from exc
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise InvalidDocument("line", f"{path}:{line}: {exc}") from exc
            if len(docs) >= batch:
                yield docs, offset, line
                docs = []
    if docs:
        yield docs, offset, line


async def bulk_ingest(
    pipeline: KnowledgeBase,
    path: Path,
    *,
    checkpoint: Path,
    collection: str,
    batch: int = 256,
    max_chars: int = 100_000,
    restart: bool = False,
    on_progress: Callable[[BulkProgress], None] | None = None,
) -> BulkReport:
    """Upsert every document of the JSON Lines file `path`, resuming from `checkpoint` if it matches.

    `restart` ignores an existing checkpoint (the run is still an idempotent upsert). The
    checkpoint is removed once the whole file is in. Raises `InvalidDocument` on a bad line.
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")
    state = await asyncio.to_thread(_starting_point, path, checkpoint, collection, restart)
    resumed = state.documents
    started = time.perf_counter()
    done_docs = done_chunks = 0
    # One prepared batch waits while the previous one commits; more would only hold memory.
    ready: asyncio.Queue[tuple[PreparedIngest, int, int] | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        batches = read_batches(path, state.offset, state.line, batch, max_chars)
        # Reading and parsing happen off the event loop too, one batch at a time.
        while (item := await asyncio.to_thread(next, batches, None)) is not None:
            docs, end, line = item
            await ready.put((await pipeline.prepare_ingest(docs), end, line))
        await ready.put(None)

    producer = asyncio.create_task(produce())
    completed = False
    try:
        while (item := await _next(ready, producer)) is not None:
            prepared, end, line = item
            report = await pipeline.commit_ingest(prepared, settle=False)
            done_docs += report.documents
            done_chunks += report.chunks
            state.offset, state.line = end, line
            state.documents += report.documents
            state.chunks += report.chunks
            await asyncio.to_thread(state.save, checkpoint)
            if on_progress is not None:
                on_progress(
                    BulkProgress(
                        state.documents, state.chunks, end, state.size, time.perf_counter() - started
                    )
                )
        await producer  # re-raises a failure of the reader or the encoder
        completed = True
    finally:
        if not producer.done():
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        if not completed:
            # Interrupted: snapshot what was committed so Ctrl-C exits promptly (re-weighting,
            # a rewrite of every stored vector, is left to the next start), and never let a
            # failure here (the store may be what failed) hide the original error: the dirty
            # marker then makes the next start recount from the store.
            with contextlib.suppress(Exception):
                await pipeline.settle_statistics(reweight=False)
    await pipeline.settle_statistics()
    await asyncio.to_thread(checkpoint.unlink, missing_ok=True)
    return BulkReport(done_docs, done_chunks, resumed, time.perf_counter() - started)


def _starting_point(path: Path, checkpoint: Path, collection: str, restart: bool) -> IngestCheckpoint:
    """The saved checkpoint if it describes this file unchanged, else a fresh start."""
    stat = path.stat()
    fresh = IngestCheckpoint(str(path.resolve()), stat.st_size, stat.st_mtime_ns, collection)
    found = None if restart else IngestCheckpoint.load(checkpoint)
    return found if found is not None and found.matches(fresh) else fresh


async def _next(
    ready: asyncio.Queue[tuple[PreparedIngest, int, int] | None], producer: asyncio.Task[None]
) -> tuple[PreparedIngest, int, int] | None:
    """The next prepared batch; a producer that failed before queueing its end raises here."""
    getter = asyncio.ensure_future(ready.get())
    await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
    if not getter.done() and producer.exception() is not None:
        getter.cancel()
        producer.result()  # raises the producer's exception
    # A producer that ended normally queued None last, so the getter completes.
    return await getter
