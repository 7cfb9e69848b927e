"""Switching the embedding model safely: build a new collection beside the live one, swap, roll back.

`reindex` never touches the live collection:

1. It picks a target collection ``<logical>__<model slug>__<UTC time>`` (or, after an
   interruption with the same target spec, the one it had started) and opens it with the target
   encoder's model id and dimension, so the model guard protects it like any other collection.
2. It copies every chunk of the live collection in primary-key order. Sparse BM25 vectors and the
   ``tf``/``doc_len`` bookkeeping do not depend on the model and are copied as they are; the dense
   vector is re-embedded from the same `index_text` an ingest embeds. After each batch a
   checkpoint (``<data_dir>/collections/<logical>.reindex.json``) records the last key copied, so
   a rerun continues after it instead of starting over.
3. Ingests and deletes carry on against the live collection meanwhile; the kb's write
   journal records which documents they touched. Those documents are re-read from the live
   collection and replayed into the target once outside the write lock (most of them, while
   writers still run) and once more under it (the rest), so nothing acknowledged is lost.
4. Under the write lock the pointer moves to the target and the kb's encoder, store and
   statistics path are replaced in one step; `kb_version` is bumped. The old collection is kept.

`rollback` is the same swap in reverse, to the previous collection: it replays the documents
written since the last swap (another journal, running from swap to swap) into it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from retrieval.collections.records import (
    REINDEX_JOURNAL,
    ROLLBACK_JOURNAL,
    Checkpoint,
    CollectionSummary,
    ProgressCallback,
    ReindexPaths,
    ReindexReport,
    RollbackReport,
    collection_name,
)
from retrieval.collections.specs import spec_for_model_id
from retrieval.collections.stores import pointer_for, store_for
from retrieval.encoders.protocol import Encoder
from retrieval.errors import NoPreviousCollection, ReindexError
from retrieval.knowledge_base import KnowledgeBase, index_text
from retrieval.settings import Settings
from retrieval.store.handover import HandoverStore
from retrieval.store.pointer import CollectionPointer, check_collection_name
from retrieval.store.protocol import VectorStore
from retrieval.types import ChunkRecord, CollectionInfo, aliases_of
from retrieval.util import utc_now

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _store(settings: Settings, name: str) -> HandoverStore:
    store = store_for(settings, name, HandoverStore)
    if not isinstance(store, HandoverStore):
        raise TypeError("store_for ignored the requested class")
    return store


async def describe_collection(settings: Settings, name: str) -> CollectionInfo | None:
    """Model id and dimension recorded in a collection; None when it does not exist."""
    store = _store(settings, name)
    try:
        if not await store.exists():
            return None
        return await store.describe()
    finally:
        await store.close()


async def summarize(
    settings: Settings, name: str, pointer: CollectionPointer | None = None
) -> CollectionSummary:
    """What the pointer and the collection record about `name`."""
    state = await (pointer or pointer_for(settings)).state()
    info = await describe_collection(settings, name)
    return CollectionSummary(
        name, state.spec_of(name), info.model_id if info else None, info.dim if info else 0
    )


def resume_journals(kb: KnowledgeBase, settings: Settings) -> None:
    """Keep journaling after a restart: for an unfinished reindex, and for a later rollback."""
    paths = ReindexPaths.for_settings(settings)
    if paths.checkpoint.exists():
        kb.begin_journal(REINDEX_JOURNAL, paths.reindex_journal)
    if paths.rollback_journal.exists():
        kb.begin_journal(ROLLBACK_JOURNAL, paths.rollback_journal)


async def _reembed(records: Sequence[ChunkRecord], encoder: Encoder, head_repeats: int) -> list[ChunkRecord]:
    """The records with dense vectors from `encoder`, embedded from what ingest embedded."""
    if not records:
        return []
    texts = [index_text(r.title, r.text, aliases_of(r.metadata), head_repeats) for r in records]
    vectors = await encoder.encode_passages(texts)
    if vectors.shape != (len(records), encoder.dim):
        raise ReindexError(
            f"encoder {encoder.model_id} returned vectors of shape {vectors.shape} "
            f"for {len(records)} texts at dim {encoder.dim}"
        )
    return [dataclasses.replace(r, dense=vectors[i]) for i, r in enumerate(records)]


async def _replay(
    doc_ids: Sequence[str], live: VectorStore, target: VectorStore, encoder: Encoder, head_repeats: int
) -> None:
    """Make the target hold exactly the live chunks of these documents (none, if deleted)."""
    for start in range(0, len(doc_ids), 100):
        ids = list(doc_ids[start : start + 100])
        current = await _reembed(await live.chunks(ids), encoder, head_repeats)
        held = await target.chunk_terms(ids)
        await target.upsert(current)
        keep = {r.id for r in current}
        await target.delete([t.chunk_id for t in held if t.chunk_id not in keep])


async def _catch_up(
    kb: KnowledgeBase, journal_name: str, live: VectorStore, target: VectorStore, encoder: Encoder
) -> int:
    journal = kb.journal(journal_name)
    if journal is None:
        return 0
    pending = journal.pending()
    if pending:
        await _replay(sorted(pending), live, target, encoder, kb.config.head_repeats)
        journal.settle(pending)
    return len(pending)


async def _uncancellable(work: Awaitable[_T]) -> _T:
    """Run `work` to the end even if the caller is cancelled meanwhile; then re-raise the cancel."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            # Half a swap (pointer moved, kb not) is worse than a late cancellation.
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


def _fresh_journal(kb: KnowledgeBase, name: str, path: Path) -> None:
    kb.end_journal(name)
    path.unlink(missing_ok=True)
    kb.begin_journal(name, path)


def _forget_reindex(kb: KnowledgeBase, paths: ReindexPaths) -> None:
    kb.end_journal(REINDEX_JOURNAL)
    paths.reindex_journal.unlink(missing_ok=True)
    paths.checkpoint.unlink(missing_ok=True)


async def _switch(
    kb: KnowledgeBase,
    *,
    encoder: Encoder,
    target: HandoverStore,
    journal_name: str,
    pointer: CollectionPointer,
    spec: str,
    paths: ReindexPaths,
) -> tuple[int, Encoder]:
    """Replay the journal into `target`, then make it live. Returns (documents replayed, old encoder)."""
    live = kb.store
    # Most of the catch-up happens while writers still run, so their pause below stays short.
    replayed = await _catch_up(kb, journal_name, live, target, encoder)
    async with kb.write_lock:
        replayed += await _catch_up(kb, journal_name, live, target, encoder)
        journal = kb.journal(journal_name)
        if journal is None:
            logger.warning(
                "no %s journal: writes to %s since it began cannot be replayed", journal_name, live.collection
            )
        if journal is None or journal.reference_avgdl != kb.stats.reference_avgdl:
            # The live collection was re-weighted meanwhile (its average length drifted): the copied
            # sparse vectors carry the old weights.
            rewritten = await target.rewrite_sparse(kb.sparse.stored_vector)
            logger.info("re-weighted %d sparse vectors in %s", rewritten, target.collection)
        live_rows, target_rows = await live.count(), await target.count()
        if live_rows != target_rows:
            raise ReindexError(
                f"{target.collection} holds {target_rows} chunks but {live.collection} holds {live_rows}; "
                "not swapped"
            )
        old_encoder = await _uncancellable(_commit(kb, encoder, target, pointer, spec, paths, journal_name))
    return replayed, old_encoder


async def _commit(
    kb: KnowledgeBase,
    encoder: Encoder,
    target: HandoverStore,
    pointer: CollectionPointer,
    spec: str,
    paths: ReindexPaths,
    journal_name: str,
) -> Encoder:
    live = kb.store
    old_stats = kb.config.stats_path
    await pointer.swap(target.collection, spec=spec)
    older = target.take_over(live)
    new_stats = old_stats.with_name(f"{target.collection}.json") if old_stats is not None else None
    old_encoder, _ = await kb.adopt(encoder, target, new_stats)
    if journal_name == REINDEX_JOURNAL:
        _forget_reindex(kb, paths)
    # (After a rollback an unfinished reindex stays on record: its source is no longer live, so the
    # next reindex drops its target and starts afresh.)
    # Everything written so far is in both collections; from here on, record what a rollback replays.
    _fresh_journal(kb, ROLLBACK_JOURNAL, paths.rollback_journal)
    if old_stats is not None and new_stats is not None:
        marker, copy = old_stats.with_suffix(".fixtures.sha256"), new_stats.with_suffix(".fixtures.sha256")
        if marker.exists() and not copy.exists():
            shutil.copyfile(marker, copy)  # the fixtures are in the new collection too
    if older is not None:
        await older.close()
    return old_encoder


async def _start_or_resume(
    kb: KnowledgeBase,
    settings: Settings,
    pointer: CollectionPointer,
    paths: ReindexPaths,
    *,
    spec: str,
    model_id: str,
    dim: int,
) -> Checkpoint:
    live = kb.store
    state = await pointer.state()
    checkpoint = Checkpoint.load(paths.checkpoint)
    if checkpoint is not None and not checkpoint.matches(spec, model_id, dim, live.collection):
        logger.info("abandoning the unfinished reindex into %s (%s)", checkpoint.target, checkpoint.spec)
        if checkpoint.target not in (state.active, state.previous, live.collection):
            stale = _store(settings, checkpoint.target)
            try:
                if await stale.exists():
                    await stale.drop()
            finally:
                await stale.close()
        _forget_reindex(kb, paths)
        checkpoint = None
    if checkpoint is None:
        name = collection_name(pointer.logical, spec)
        taken = {state.active, state.previous, live.collection}
        suffix = 1
        while name in taken or await describe_collection(settings, name) is not None:
            suffix += 1
            name = check_collection_name(f"{collection_name(pointer.logical, spec)}_{suffix}")
        checkpoint = Checkpoint(name, spec, model_id, dim, live.collection, utc_now())
        _forget_reindex(kb, paths)
        checkpoint.save(paths.checkpoint)
    # Journal before reading the first row: every later write is then either copied or replayed.
    kb.begin_journal(REINDEX_JOURNAL, paths.reindex_journal)
    return checkpoint


async def reindex(
    kb: KnowledgeBase,
    target_encoder: Encoder,
    *,
    settings: Settings,
    spec: str | None = None,
    batch: int = 256,
    progress: bool = False,
    on_progress: ProgressCallback | None = None,
    pointer: CollectionPointer | None = None,
) -> ReindexReport:
    """Re-embed the live collection with `target_encoder` into a new collection and swap to it.

    `spec` (``local``, ``ollama/<model>``...) is recorded with the new collection so a later
    rollback can rebuild its encoder; by default it is derived from the model id. `progress` shows
    a tqdm bar; `on_progress` receives (copied, total) after each batch. Interrupted (cancelled,
    crashed), a rerun with the same spec resumes from the checkpoint. Searches keep answering
    throughout and writes are blocked only for the final catch-up and the swap.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    started = time.perf_counter()
    pointer = pointer or pointer_for(settings)
    paths = ReindexPaths.for_settings(settings)
    live = kb.store
    dim = await target_encoder.discover_dim()
    spec = spec or spec_for_model_id(target_encoder.model_id)
    checkpoint = await _start_or_resume(
        kb, settings, pointer, paths, spec=spec, model_id=target_encoder.model_id, dim=dim
    )
    target = _store(settings, checkpoint.target)
    swapped = False
    try:
        info = await target.open(target_encoder.model_id, dim)
        if info.rows < checkpoint.copied:
            # The target lost rows the checkpoint counts (dropped by hand?): copy everything again.
            logger.warning(
                "%s has %d rows, checkpoint says %d: starting over",
                target.collection,
                info.rows,
                checkpoint.copied,
            )
            checkpoint.last_id, checkpoint.copied = None, 0
        resumed_from = checkpoint.copied
        if resumed_from:
            logger.info("resuming the reindex into %s after %d chunks", target.collection, resumed_from)
        total = await live.count()
        copied = 0
        with tqdm(
            total=total, initial=resumed_from, unit="chunk", desc=f"reindex -> {spec}", disable=not progress
        ) as bar:
            rows_iter = live.iterate_chunks(after=checkpoint.last_id, batch_size=batch)
            async with contextlib.aclosing(rows_iter) as rows:
                async for chunk_batch in rows:
                    await target.upsert(await _reembed(chunk_batch, target_encoder, kb.config.head_repeats))
                    checkpoint.last_id = chunk_batch[-1].id
                    checkpoint.copied += len(chunk_batch)
                    await asyncio.to_thread(checkpoint.save, paths.checkpoint)
                    copied += len(chunk_batch)
                    bar.update(len(chunk_batch))
                    if on_progress is not None:
                        on_progress(checkpoint.copied, max(total, checkpoint.copied))
        replayed, retired = await _switch(
            kb,
            encoder=target_encoder,
            target=target,
            journal_name=REINDEX_JOURNAL,
            pointer=pointer,
            spec=spec,
            paths=paths,
        )
        swapped = True
    finally:
        if not swapped:
            await target.close()  # the checkpoint and the journal stay, for a rerun to resume
    rows_now = await target.count()
    if on_progress is not None:
        on_progress(rows_now, rows_now)
    logger.info(
        "reindexed %s -> %s (%s, dim %d): %d chunks, %d copied now, %d replayed documents",
        checkpoint.source,
        target.collection,
        target_encoder.model_id,
        dim,
        rows_now,
        copied,
        replayed,
    )
    return ReindexReport(
        source=checkpoint.source,
        target=target.collection,
        spec=spec,
        model_id=target_encoder.model_id,
        dim=dim,
        rows=rows_now,
        copied=copied,
        resumed_from=resumed_from,
        replayed_documents=replayed,
        took_s=time.perf_counter() - started,
        retired_encoder=retired,
    )


async def rollback(
    kb: KnowledgeBase,
    encoder_for_previous: Encoder,
    *,
    settings: Settings,
    pointer: CollectionPointer | None = None,
) -> RollbackReport:
    """Swap back to the collection live before the last swap, with the encoder it was built by.

    Documents written since that swap are replayed into it first. An unfinished reindex is
    abandoned (its target is dropped by the next reindex). Raises `NoPreviousCollection` when
    nothing was swapped yet and `ModelMismatch` when the encoder is not the collection's model.
    """
    pointer = pointer or pointer_for(settings)
    paths = ReindexPaths.for_settings(settings)
    previous = await pointer.previous()
    if previous is None:
        raise NoPreviousCollection("no previous collection to roll back to")
    live = kb.store
    dim = await encoder_for_previous.discover_dim()
    target = _store(settings, previous)
    swapped = False
    try:
        if not await target.exists():
            raise ReindexError(f"the previous collection {previous} no longer exists")
        await target.open(encoder_for_previous.model_id, dim)  # the model guard: ModelMismatch
        spec = (await pointer.state()).spec_of(previous) or spec_for_model_id(encoder_for_previous.model_id)
        replayed, retired = await _switch(
            kb,
            encoder=encoder_for_previous,
            target=target,
            journal_name=ROLLBACK_JOURNAL,
            pointer=pointer,
            spec=spec,
            paths=paths,
        )
        swapped = True
    finally:
        if not swapped:
            await target.close()
    logger.info("rolled back %s -> %s (%s)", live.collection, previous, encoder_for_previous.model_id)
    return RollbackReport(previous, live.collection, encoder_for_previous.model_id, dim, replayed, retired)
