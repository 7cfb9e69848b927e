"""The Litestar application factory."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry

from retrieval.encoders.protocol import Encoder
from search_api.auth import API_KEY_HEADER, AccessKeys
from search_api.body_gate import body_gate
from search_api.controllers.admin import AdminReindexController, ReindexRequest
from search_api.controllers.cache import AdminCacheController
from search_api.controllers.documents import DocumentsController
from search_api.controllers.health import HealthController
from search_api.controllers.page import PageController, static_router
from search_api.controllers.search import SearchController
from search_api.errors import api_error_handler
from search_api.metrics import MetricsController
from search_api.model_build import ModelBuild
from search_api.schemas import DocumentsRequest, SearchRequest
from search_api.settings import ApiSettings, LimitsSettings, load_api_settings
from search_api.state import AppState
from search_api.telemetry import ServiceMetrics, request_id_var

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
BODY_SCHEMAS: dict[str, type] = {
    "/v1/search": SearchRequest,
    "/v1/documents": DocumentsRequest,
    "/v1/admin/reindex": ReindexRequest,
}
"""Each route's body type, for the gate's strict decoding (the handlers declare the same)."""


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
        token = request_id_var.set(request_id)  # every log line of this request carries it

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    return middleware


_RATE_UNITS = ("second", "minute", "hour", "day")


def _rate_limit_identity(request: Request[Any, Any, Any]) -> str:
    """Whose budget a request spends: its API key's when the key is valid, else its address's.

    Only a configured key names a budget: were any header value enough, a client could reset its
    budget by sending a new made-up key with every request. The key is kept as a digest.
    """
    key = request.headers.get(API_KEY_HEADER)
    if key:
        keys: AccessKeys = request.app.state.access_keys
        if keys.admin.accepts(key) or keys.search.accepts(key):
            return "key:" + hashlib.sha256(key.encode()).hexdigest()
    return "addr:" + get_remote_address(request)


def rate_limit_config(limits: LimitsSettings) -> RateLimitConfig | None:
    """Litestar's rate limiter per `[limits]`, or None when it is off (rate_limit = 0)."""
    if limits.rate_limit < 0:
        raise ValueError("limits.rate_limit must be 0 (off) or a positive number of requests")
    if limits.rate_limit_unit not in _RATE_UNITS:
        raise ValueError(f"limits.rate_limit_unit must be one of {', '.join(_RATE_UNITS)}")
    if limits.rate_limit == 0:
        return None
    return RateLimitConfig(
        rate_limit=(limits.rate_limit_unit, limits.rate_limit),  # type: ignore[arg-type]  # checked above
        # Probes and scrapes must never be throttled into reporting an outage.
        exclude=["^/v1/health$", "^/v1/ready$", "^/metrics$"],
        identifier_for_request=_rate_limit_identity,
    )


def create_app(
    settings: ApiSettings | None = None,
    *,
    encoder: Encoder | None = None,
    model_build: ModelBuild | None = None,
) -> Litestar:
    """Build the app; the engine starts in the background when the app starts.

    `encoder` replaces the configured encoder (tests); `model_build` is a first start's model build
    already running in a child process (`search-api serve`).
    """
    settings = settings or load_api_settings()
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    state = AppState(settings, encoder=encoder, model_build=model_build, registry=registry, observer=metrics)
    access_keys = AccessKeys.from_settings(settings.service)  # a malformed digest stops start-up here
    rate_limit = rate_limit_config(settings.limits)
    middleware: list[Any] = [request_id_middleware, metrics.middleware]
    if rate_limit is not None:
        middleware.append(rate_limit.middleware)
    # Innermost: a refused body is still timed, logged and rate-limited like any request.
    middleware.append(partial(body_gate, max_bytes=MAX_BODY_BYTES, schemas=BODY_SCHEMAS))

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        state.start_background()
        try:
            yield
        finally:
            await state.close()

    async def provide_state() -> AppState:
        return state

    app = Litestar(
        route_handlers=[
            MetricsController,
            SearchController,
            DocumentsController,
            HealthController,
            AdminReindexController,
            AdminCacheController,
            PageController,
            static_router(),
        ],
        dependencies={"serving": Provide(provide_state, use_cache=True)},
        exception_handlers={Exception: api_error_handler},
        lifespan=[lifespan],
        middleware=middleware,
        cors_config=CORSConfig(allow_origins=list(settings.service.cors_origins))
        if settings.service.cors_origins
        else None,
        openapi_config=OpenAPIConfig(title="Chinese KB hybrid search", version="0.1.0", path="/schema"),
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,  # the CLI configures logging (JSON lines); Litestar's would replace it
        debug=False,
    )
    app.state.serving = state
    app.state.access_keys = access_keys
    return app
