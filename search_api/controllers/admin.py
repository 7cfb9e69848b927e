"""`/v1/admin/reindex`: switch the embedding model while serving, and roll the switch back."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from retrieval.collections.manager import ReindexJob
from retrieval.collections.stores import pointer_for
from retrieval.errors import ModelMismatch, NoPreviousCollection, ReindexError, ReindexInProgress
from search_api.auth import admin_guard
from search_api.errors import ERROR_RESPONSES, ApiError
from search_api.schemas import Body
from search_api.state import AppState


class Conflict(ApiError):
    """The request clashes with what the server is doing or has done."""

    status = 409
    code = "conflict"


class ReindexRequest(Body):
    """`POST /v1/admin/reindex` body: the encoder spec to re-embed for."""

    to: str
    """``local``, ``local-fp32``, ``ollama/<model>`` or ``openai/<model>``."""
    batch: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 256


class ReindexStatus(Body):
    """The last reindex started here (``idle`` when none was), and the collection now live."""

    state: Literal["idle", "running", "succeeded", "failed", "cancelled"]
    active: str
    model_id: str
    dim: int
    id: str | None = None
    target: str | None = None
    done: int = 0
    total: int = 0
    collection: str | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


class RollbackResponse(Body):
    """What a rollback switched to."""

    active: str
    replaced: str
    model_id: str
    dim: int
    replayed_documents: int
    kb_version: int


async def _status(serving: AppState, job: ReindexJob | None) -> ReindexStatus:
    running = serving.require()
    encoder = running.kb.encoder
    active = await pointer_for(running.settings).active()
    if job is None:
        return ReindexStatus(state="idle", active=active, model_id=encoder.model_id, dim=encoder.dim)
    return ReindexStatus(
        state=job.state,
        active=active,
        model_id=encoder.model_id,
        dim=encoder.dim,
        id=job.id,
        target=job.target,
        done=job.done,
        total=job.total,
        collection=job.collection,
        error=job.error,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


class AdminReindexController(Controller):
    """Re-embed into a new collection in the background, watch it, and roll back (admin key)."""

    path = "/v1/admin/reindex"
    tags = ["admin"]
    guards = [admin_guard]

    @post(
        operation_id="startReindex",
        status_code=HTTP_202_ACCEPTED,
        summary="Start a reindex",
        responses=ERROR_RESPONSES,
    )
    async def start(self, data: ReindexRequest, serving: NamedDependency[AppState]) -> ReindexStatus:
        """Re-embed every chunk for another model and swap to it; searches keep answering."""
        try:
            job = serving.require().collections.start_reindex(data.to, batch=data.batch)
        except ReindexInProgress:
            raise  # its own code (409 reindex_in_progress)
        except ValueError as exc:
            raise ApiError(str(exc), code="invalid_encoder_spec", field="to") from exc
        return await _status(serving, job)

    @get(operation_id="reindexStatus", summary="Reindex status", responses=ERROR_RESPONSES)
    async def status(self, serving: NamedDependency[AppState]) -> ReindexStatus:
        """State and progress of the last reindex started here, and the live collection."""
        return await _status(serving, serving.require().collections.job)

    @post(
        "/rollback",
        operation_id="rollbackReindex",
        status_code=HTTP_200_OK,
        summary="Roll back",
        responses=ERROR_RESPONSES,
    )
    async def rollback(self, serving: NamedDependency[AppState]) -> RollbackResponse:
        """Swap back to the collection live before the last swap (writes since then are replayed)."""
        running = serving.require()
        try:
            report = await running.collections.rollback()
        except (ReindexInProgress, NoPreviousCollection):
            raise  # their own codes (409 reindex_in_progress, no_previous_collection)
        except (ReindexError, ModelMismatch) as exc:
            raise Conflict(str(exc), code="rollback_failed") from exc
        return RollbackResponse(
            active=report.active,
            replaced=report.replaced,
            model_id=report.model_id,
            dim=report.dim,
            replayed_documents=report.replayed_documents,
            kb_version=running.kb.kb_version,
        )
