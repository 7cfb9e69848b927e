"""The engine as the API sees it: started in the background, ready once the model and data are."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry

from retrieval.cache.config import CacheConfig
from retrieval.cache.factory import build_cache
from retrieval.cache.protocol import Cache
from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.protocol import Encoder
from retrieval.engine import (
    encoder_from_spec,
    ensure_built_model,
    ingest_fixtures,
    local_encoder,
    open_pipeline,
    parse_spec,
    wait_for_remote,
)
from retrieval.errors import NoPreviousCollection, NotReady, ReindexError, ReindexInProgress, StoreUnavailable
from retrieval.pipeline import SearchPipeline
from retrieval.reindex import RollbackReport, spec_for_model_id, summarize
from retrieval.reindex import reindex as reindex_collection
from retrieval.reindex import rollback as rollback_collection
from retrieval.settings import Settings
from retrieval.store.pointer import pointer_for
from retrieval.util import utc_now
from search_api.intents_cli import ensure_default_head
from search_api.search_service import SearchService

logger = logging.getLogger(__name__)


@dataclass
class ReindexJob:
    """A reindex running (or finished) in the serving process."""

    id: str
    target: str
    """The encoder spec re-embedded for."""
    state: Literal["running", "succeeded", "failed", "cancelled"] = "running"
    done: int = 0
    total: int = 0
    error: str | None = None
    collection: str | None = None
    """The new collection, once swapped in."""
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None

    def progress(self, done: int, total: int) -> None:
        """Progress callback for `reindex`."""
        self.done, self.total = done, total


@dataclass
class EngineState:
    """Owns the pipeline; `phase` tells readiness what start-up is doing."""

    settings: Settings
    encoder: Encoder | None = None
    """An encoder to use instead of building the configured local model (tests, remote services)."""
    pipeline: SearchPipeline | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    cache: Cache | None = None
    service: SearchService = field(default_factory=SearchService)
    phase: str = "starting"
    error: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    reindex_job: ReindexJob | None = None
    """The last reindex started through the API."""
    retired_encoder: Encoder | None = field(default=None, repr=False)
    """The encoder the last swap replaced: kept open for a rollback (and searches still using it)."""
    _admin_busy: bool = field(default=False, repr=False)
    _reindex_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def require(self) -> SearchPipeline:
        """The pipeline, or 503 `not_ready` while it starts (or after start-up failed)."""
        if self.pipeline is None:
            detail = f"engine is {self.phase}" + (f": {self.error}" if self.error else "")
            raise NotReady(detail)
        return self.pipeline

    def start_background(self) -> None:
        """Start building the model, opening the store and ingesting fixtures without blocking."""
        self._task = asyncio.create_task(self._start())

    async def wait_ready(self) -> None:
        """Block until start-up finished (tests and the CLI use it)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _start(self) -> None:
        try:
            encoder = self.encoder
            if encoder is None and self.settings.remote_encoder is not None:
                remote = remote_encoder(self.settings.remote_encoder)
                self.phase = "waiting for the embedding service"
                await wait_for_remote(remote, self._note_wait)
                encoder = remote
            if encoder is None:
                self.phase = "building model"
                model = await asyncio.to_thread(ensure_built_model, self.settings, logger.info)
                encoder = await asyncio.to_thread(local_encoder, self.settings, model)
                routing = self.settings.routing
                if routing.enabled and routing.train_on_start:
                    self.phase = "training the intent classifier"
                    head = self.settings.service.data_dir / "intents"
                    await asyncio.to_thread(ensure_default_head, self.settings, head)
            pipeline = await self._open_pipeline(encoder)
            await self._start_cache(pipeline)
            if self.settings.service.ingest_fixtures:
                self.phase = "ingesting fixtures"
                await ingest_fixtures(pipeline, self.settings)
            self.pipeline = pipeline
            # Start-up leaves a large, long-lived heap (jieba's dictionary, the lexicon, the
            # model's tokenizer). Freezing it keeps every later full collection from walking it,
            # which otherwise shows up as multi-millisecond pauses in cache-hit latency.
            gc.collect()
            gc.freeze()
            self.phase = "ready"
            self.error = None
            logger.info("engine ready: %d chunks", pipeline.stats.n_docs)
        except Exception as exc:
            # Stay alive and report it on /v1/ready rather than dying without a word.
            self.phase = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("engine start-up failed")

    async def _open_pipeline(self, encoder: Encoder) -> SearchPipeline:
        """Open the store and the pipeline, waiting while Milvus cannot be reached.

        Milvus may start after the API (or restart meanwhile): the API stays up, says so on
        /v1/ready, and opens the store once Milvus answers.
        """
        delay = 0.5
        while True:
            self.phase = "opening store"
            try:
                return await open_pipeline(self.settings, encoder=encoder)
            except StoreUnavailable as exc:
                self.phase = "waiting for the vector store"
                self._note_wait(f"Milvus unreachable ({exc}); retrying in {delay:.1f} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _start_cache(self, pipeline: SearchPipeline) -> None:
        c = self.settings.cache
        if not c.enabled:
            return
        config = CacheConfig(
            redis_url=c.redis_url,
            ttl_s=c.ttl_s,
            max_entries=c.max_entries,
            semantic_threshold=c.semantic_threshold,
            socket_timeout_s=c.socket_timeout_s,
            key_prefix=c.key_prefix,
        )
        cache = build_cache(config, registry=self.registry)
        await cache.start()
        # Every committed write makes every cached answer (in every worker) stale.
        pipeline.write_listeners.append(cache.bump_version)
        self.cache = cache
        self.service.cache = cache

    def _note_wait(self, message: str) -> None:
        self.error = message
        logger.warning(message)

    # -- model switching ------------------------------------------------------------------
    def start_reindex(self, spec: str, *, batch: int = 256) -> ReindexJob:
        """Start re-embedding into a new collection in the background; returns the job.

        Raises ValueError for an unknown spec and `ReindexInProgress` while a reindex or a
        rollback runs. Searches and writes keep being served meanwhile.
        """
        pipeline = self.require()
        parse_spec(spec)
        if self._admin_busy:
            raise ReindexInProgress("a reindex or rollback is already running")
        # Set before the first await so a second request in the same instant sees it.
        self._admin_busy = True
        job = ReindexJob(uuid.uuid4().hex, spec.strip())
        self.reindex_job = job
        self._reindex_task = asyncio.create_task(self._run_reindex(pipeline, job, batch))
        return job

    async def _run_reindex(self, pipeline: SearchPipeline, job: ReindexJob, batch: int) -> None:
        encoder: Encoder | None = None
        try:
            # The local spec may build the model: minutes of CPU, kept off the event loop.
            encoder = await asyncio.to_thread(encoder_from_spec, job.target, self.settings)
            report = await reindex_collection(
                pipeline,
                encoder,
                settings=self.settings,
                spec=job.target,
                batch=batch,
                on_progress=job.progress,
            )
            await self._retire(report.retired_encoder)
            job.collection, job.state = report.target, "succeeded"
        except asyncio.CancelledError:
            job.state = "cancelled"
            raise
        except Exception as exc:
            logger.exception("reindex to %s failed", job.target)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = utc_now()
            self._admin_busy = False
            if encoder is not None and encoder is not pipeline.encoder:
                await encoder.close()

    async def rollback(self) -> RollbackReport:
        """Swap back to the previous collection, with the encoder it was built by.

        Raises `NoPreviousCollection`, `ReindexInProgress`, or another `ReindexError`/`StoreError`.
        """
        pipeline = self.require()
        if self._admin_busy:
            raise ReindexInProgress("a reindex or rollback is already running")
        self._admin_busy = True
        encoder: Encoder | None = None
        try:
            pointer = pointer_for(self.settings)
            previous = await pointer.previous()
            if previous is None:
                raise NoPreviousCollection("no previous collection to roll back to")
            summary = await summarize(self.settings, previous, pointer)
            kept = self.retired_encoder
            if kept is not None and kept.model_id == summary.model_id:
                encoder = kept
            else:
                spec = summary.spec or (spec_for_model_id(summary.model_id) if summary.model_id else None)
                if spec is None:
                    raise ReindexError(f"the previous collection {previous} no longer exists")
                encoder = await asyncio.to_thread(encoder_from_spec, spec, self.settings)
            report = await rollback_collection(pipeline, encoder, settings=self.settings, pointer=pointer)
            if kept is encoder:
                self.retired_encoder = None  # live again
            await self._retire(report.retired_encoder)
            return report
        finally:
            self._admin_busy = False
            if (
                encoder is not None
                and encoder is not pipeline.encoder
                and encoder is not self.retired_encoder
            ):
                await encoder.close()

    async def _retire(self, encoder: Encoder) -> None:
        older, self.retired_encoder = self.retired_encoder, encoder
        # Two swaps old: no search still uses it, and rollback only reaches one swap back.
        if (
            older is not None
            and older is not encoder
            and (self.pipeline is None or older is not self.pipeline.encoder)
        ):
            await older.close()

    async def _stop_admin(self) -> None:
        # A cancelled reindex keeps its checkpoint; the next one with the same spec resumes it.
        if self._reindex_task is not None and not self._reindex_task.done():
            self._reindex_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reindex_task
        retired, self.retired_encoder = self.retired_encoder, None
        if retired is not None and (self.pipeline is None or retired is not self.pipeline.encoder):
            await retired.close()

    async def close(self) -> None:
        """Stop start-up if it is still running, then close the pipeline."""
        await self._stop_admin()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.service.drain()
        if self.cache is not None:
            await self.cache.close()
            self.cache = None
        if self.pipeline is not None:
            await self.pipeline.close()
            self.pipeline = None
