"""The engine as the API sees it: started in the background, ready once the model and data are."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.protocol import Encoder
from retrieval.engine import (
    ensure_built_model,
    ingest_fixtures,
    local_encoder,
    open_pipeline,
    wait_for_remote,
)
from retrieval.pipeline import SearchPipeline
from retrieval.settings import Settings
from search_api.errors import NotReady

logger = logging.getLogger(__name__)


@dataclass
class EngineState:
    """Owns the pipeline; `phase` tells readiness what start-up is doing."""

    settings: Settings
    encoder: Encoder | None = None
    """An encoder to use instead of building the configured local model (tests, remote services)."""
    pipeline: SearchPipeline | None = None
    phase: str = "starting"
    error: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

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
            self.phase = "opening store"
            pipeline = await open_pipeline(self.settings, encoder=encoder)
            if self.settings.service.ingest_fixtures:
                self.phase = "ingesting fixtures"
                await ingest_fixtures(pipeline, self.settings)
            self.pipeline = pipeline
            self.phase = "ready"
            self.error = None
            logger.info("engine ready: %d chunks", pipeline.stats.n_docs)
        except Exception as exc:
            # Stay alive and report it on /v1/ready rather than dying without a word.
            self.phase = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("engine start-up failed")

    def _note_wait(self, message: str) -> None:
        self.error = message
        logger.warning(message)

    async def close(self) -> None:
        """Stop start-up if it is still running, then close the pipeline."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.pipeline is not None:
            await self.pipeline.close()
            self.pipeline = None
