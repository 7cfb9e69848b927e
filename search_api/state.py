"""The engine as the API holds it: started in the background, ready once the model and data are."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from retrieval.encoders.protocol import Encoder
from retrieval.engine import Engine, open_engine
from retrieval.errors import NotReady
from retrieval.service import SearchObserver
from search_api.model_build import ModelBuild
from search_api.settings import ApiSettings

logger = logging.getLogger(__name__)


@dataclass
class AppState:
    """Owns the engine; `phase` tells readiness what start-up is doing."""

    settings: ApiSettings
    encoder: Encoder | None = None
    """An encoder to use instead of the configured one (tests)."""
    model_build: ModelBuild | None = None
    """The first start's model build, running in a child process (see `search_api.model_build`)."""
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    observer: SearchObserver | None = None
    engine: Engine | None = None
    phase: str = "starting"
    error: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def require(self) -> Engine:
        """The engine, or 503 `not_ready` while it starts (or after start-up failed)."""
        if self.engine is None:
            raise NotReady(f"engine is {self.phase}" + (f": {self.error}" if self.error else ""))
        return self.engine

    def start_background(self) -> None:
        """Start building the model, opening the store and ingesting fixtures without blocking."""
        self._task = asyncio.create_task(self._start())

    async def wait_ready(self) -> None:
        """Block until start-up finished (tests and the CLI use it)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def _note(self, phase: str, detail: str | None) -> None:
        self.phase, self.error = phase, detail

    async def _start(self) -> None:
        try:
            if self.model_build is not None:
                self.phase = "building model"
                # Once the child holds the build lock (or declined), the engine's own build step
                # waits on that lock instead of building a second copy.
                await asyncio.to_thread(self.model_build.wait_claimed)
            engine = await open_engine(
                self.settings.engine,
                encoder=self.encoder,
                wait_for_store=True,
                registry=self.registry,
                observer=self.observer,
                on_phase=self._note,
            )
            self.engine = engine
            # Start-up leaves a large, long-lived heap (jieba's dictionary, the lexicon, the
            # model's tokenizer). Freezing it keeps every later full collection from walking it,
            # which otherwise shows up as multi-millisecond pauses in cache-hit latency.
            gc.collect()
            gc.freeze()
            self.phase, self.error = "ready", None
            logger.info("engine ready: %d chunks", engine.kb.stats.n_docs)
        except Exception as exc:
            # Stay alive and report it on /v1/ready rather than dying without a word.
            self.phase = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("engine start-up failed")

    async def close(self) -> None:
        """Stop start-up if it is still running, then close the engine."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.model_build is not None:
            await asyncio.to_thread(self.model_build.stop)
        if self.engine is not None:
            await self.engine.close()
            self.engine = None
