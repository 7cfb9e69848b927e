"""The Litestar application factory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from retrieval.encoders.protocol import Encoder
from retrieval.settings import Settings, load_settings
from search_api.controllers.admin import AdminReindexController
from search_api.controllers.documents import DocumentsController
from search_api.controllers.health import HealthController
from search_api.controllers.page import PageController, static_router
from search_api.controllers.search import SearchController
from search_api.errors import api_error_handler
from search_api.metrics import MetricsController
from search_api.state import EngineState

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Give each request an id (client's X-Request-ID if sane), echo it, and expose it to errors."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = (
            given if given.isascii() and 0 < len(given) <= 64 and given.isprintable() else uuid.uuid4().hex
        )
        scope["request_id"] = request_id  # type: ignore[typeddict-unknown-key]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["X-Request-ID"] = request_id
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware


def create_app(settings: Settings | None = None, *, encoder: Encoder | None = None) -> Litestar:
    """Build the app; the engine starts in the background when the app starts.

    `encoder` replaces the configured local model (remote services, tests).
    """
    settings = settings or load_settings()
    state = EngineState(settings, encoder=encoder)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        state.start_background()
        try:
            yield
        finally:
            await state.close()

    async def provide_engine() -> EngineState:
        return state

    app = Litestar(
        route_handlers=[
            MetricsController,
            SearchController,
            DocumentsController,
            HealthController,
            AdminReindexController,
            PageController,
            static_router(),
        ],
        dependencies={"engine": Provide(provide_engine, use_cache=True)},
        exception_handlers={Exception: api_error_handler},
        lifespan=[lifespan],
        middleware=[request_id_middleware],
        cors_config=CORSConfig(allow_origins=list(settings.service.cors_origins))
        if settings.service.cors_origins
        else None,
        openapi_config=OpenAPIConfig(title="Chinese KB hybrid search", version="0.1.0", path="/schema"),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )
    app.state.engine = state
    return app
