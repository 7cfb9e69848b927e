"""Switching the served collection, for the API and the CLI alike: reindex jobs, rollback, advice.

`CollectionManager` owns the encoders a switch involves: the one it builds for the target, the one
the swap retired (kept open one swap long, for searches still using it and for a rollback), and
closes each exactly once. The API starts reindexes as background jobs; the CLI awaits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Literal

from retrieval.collections.records import CollectionSummary, ProgressCallback, ReindexReport, RollbackReport
from retrieval.collections.reindex import reindex, rollback, summarize
from retrieval.collections.specs import encoder_from_spec, parse_spec, spec_for_model_id, spec_settings
from retrieval.collections.stores import pointer_for
from retrieval.encoders.protocol import Encoder
from retrieval.errors import NoPreviousCollection, ReindexError, ReindexInProgress
from retrieval.knowledge_base import KnowledgeBase
from retrieval.settings import Settings
from retrieval.util import utc_now

logger = logging.getLogger(__name__)


@dataclass
class ReindexJob:
    """A reindex running (or finished) in this process."""

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
class CollectionManager:
    """Reindex and rollback of one knowledge base's collection, one at a time."""

    settings: Settings
    kb: KnowledgeBase
    job: ReindexJob | None = None
    """The last reindex started with `start_reindex`."""
    retired_encoder: Encoder | None = field(default=None, repr=False)
    """The encoder the last swap replaced: kept open for a rollback (and searches still using it)."""
    _busy: bool = field(default=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    # -- reindex ---------------------------------------------------------------------------
    def start_reindex(self, spec: str, *, batch: int = 256) -> ReindexJob:
        """Start re-embedding into a new collection in the background; returns the job.

        Raises ValueError for an unknown spec and `ReindexInProgress` while a reindex or a
        rollback runs. Searches and writes keep being served meanwhile.
        """
        parse_spec(spec)
        self._claim()
        job = ReindexJob(uuid.uuid4().hex, spec.strip())
        self.job = job
        self._task = asyncio.create_task(self._run_job(job, batch))
        return job

    async def _run_job(self, job: ReindexJob, batch: int) -> None:
        try:
            report = await self._reindex(job.target, batch=batch, on_progress=job.progress)
            job.collection, job.state = report.target, "succeeded"
        except asyncio.CancelledError:
            job.state = "cancelled"
            raise
        except Exception as exc:
            logger.exception("reindex to %s failed", job.target)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = utc_now()

    async def reindex(
        self,
        spec: str,
        *,
        batch: int = 256,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> ReindexReport:
        """Re-embed for `spec` and swap, awaiting the end (the CLI's way)."""
        parse_spec(spec)
        self._claim()
        return await self._reindex(spec.strip(), batch=batch, progress=progress, on_progress=on_progress)

    async def _reindex(
        self, spec: str, *, batch: int, progress: bool = False, on_progress: ProgressCallback | None = None
    ) -> ReindexReport:
        encoder: Encoder | None = None
        try:
            # The local spec may build the model: minutes of CPU, kept off the event loop.
            encoder = await asyncio.to_thread(encoder_from_spec, spec, self.settings)
            report = await reindex(
                self.kb,
                encoder,
                settings=self.settings,
                spec=spec,
                batch=batch,
                progress=progress,
                on_progress=on_progress,
            )
            await self._retire(report.retired_encoder)
            return report
        finally:
            self._busy = False
            if encoder is not None and encoder is not self.kb.encoder:
                await encoder.close()

    # -- rollback --------------------------------------------------------------------------
    async def rollback(self) -> RollbackReport:
        """Swap back to the previous collection, with the encoder it was built by.

        Raises `NoPreviousCollection`, `ReindexInProgress`, or another `ReindexError`/`StoreError`.
        """
        self._claim()
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
            report = await rollback(self.kb, encoder, settings=self.settings, pointer=pointer)
            if kept is encoder:
                self.retired_encoder = None  # live again
            await self._retire(report.retired_encoder)
            return report
        finally:
            self._busy = False
            if encoder is not None and encoder is not self.kb.encoder and encoder is not self.retired_encoder:
                await encoder.close()

    # -- what is live -----------------------------------------------------------------------
    @staticmethod
    async def describe_live(settings: Settings) -> CollectionSummary:
        """The live collection as the pointer and the collection record it (opened or not)."""
        pointer = pointer_for(settings)
        return await summarize(settings, await pointer.active(), pointer)

    def _claim(self) -> None:
        # Set before the first await, so a second request in the same instant sees it.
        if self._busy:
            raise ReindexInProgress("a reindex or rollback is already running")
        self._busy = True

    async def _retire(self, encoder: Encoder) -> None:
        older, self.retired_encoder = self.retired_encoder, encoder
        # Two swaps old: no search still uses it, and rollback only reaches one swap back.
        if older is not None and older is not encoder and older is not self.kb.encoder:
            await older.close()

    async def close(self) -> None:
        """Cancel a running reindex (its checkpoint stays, so the next one resumes) and release encoders."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        retired, self.retired_encoder = self.retired_encoder, None
        if retired is not None and retired is not self.kb.encoder:
            await retired.close()


async def mismatch_advice(settings: Settings, active: str) -> str:
    """What to do when the configured encoder is not the active collection's model."""
    pointer = pointer_for(settings)
    current = await summarize(settings, active, pointer)
    spec = current.spec or (spec_for_model_id(current.model_id) if current.model_id else None)
    advice = [f"The active collection {active!r} serves {spec or current.model_id!r}"]
    if spec is not None:
        advice.append(f"start with {spec_settings(spec)}")
    previous = await pointer.previous()
    if previous is not None:
        before = (await pointer.state()).spec_of(previous)
        advice.append(
            f"return to {previous!r} ({before or 'its model'}) with `search-api reindex --rollback`"
        )
    advice.append("or re-embed it for the configured model with `search-api reindex --to <spec>`")
    return "; ".join(advice) + "."
