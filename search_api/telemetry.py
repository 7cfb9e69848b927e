"""Structured logs (JSON lines carrying the request id) and the service's Prometheus metrics.

The request id lives in a context variable set by the request-id middleware, so every log line
written while a request is handled, in any module, carries it without being passed around.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Latency buckets from 1 ms to 10 s: cache hits sit near the bottom, the 600 ms budget mid-way.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 1.0, 2.5, 5.0, 10.0)

_ACCESS = logging.getLogger("search_api.access")


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being handled (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only adds `request_id`."""
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields, traceback."""

    # Attributes every LogRecord has; anything else was passed with `extra=` and is kept
    # (uvicorn's `color_message` repeats the message with terminal colours).
    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message",
        "asctime",
        "color_message",
    }

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record."""
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class ThirdPartyChatter(logging.Filter):
    """Drop libraries' INFO chatter written to the root logger (onnxruntime's quantiser logs one
    line per tensor through `logging.info`); their warnings and errors still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a sub-WARNING record of the root logger written from inside onnxruntime."""
        return not (
            record.name == "root" and record.levelno < logging.WARNING and "onnxruntime" in record.pathname
        )


def configure_logging(level: str, fmt: str = "json") -> None:
    """Log to stderr as JSON lines (`fmt="json"`) or plain text, with the request id either way.

    One line per event: jieba's own handler is removed where it is imported (`retrieval.text`).
    """
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.addFilter(ThirdPartyChatter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        text = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
        handler.setFormatter(logging.Formatter(text))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Warnings (deprecations in libraries) become log records too, so stderr stays JSON lines.
    logging.captureWarnings(True)


class ServiceMetrics:
    """Per-route request latency, search stage timings (encoder, store, cache) and process figures."""

    def __init__(self, registry: CollectorRegistry):
        ProcessCollector(registry=registry)  # process_resident_memory_bytes and friends
        self.requests = Histogram(
            "http_request_duration_seconds",
            "Time from request to the last body byte, by route template, method and status",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.stages = Histogram(
            "search_stage_duration_seconds",
            "Time of each stage of an uncached search: encode (encoder), dense and sparse (store)",
            ["stage"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.cache_lookups = Histogram(
            "search_cache_lookup_duration_seconds",
            "Time of a cache lookup, by tier and outcome",
            ["tier", "outcome"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.searches = Counter(
            "search_requests",
            "Searches answered, by how: a cache hit (exact, canonical, semantic), computed, or degraded",
            ["answer"],
            registry=registry,
        )

    def cache_lookup(self, tier: str, hit: bool, seconds: float) -> None:
        """One cache lookup (the search service reports each; see `SearchObserver`)."""
        self.cache_lookups.labels(tier, "hit" if hit else "miss").observe(seconds)

    def answered(self, how: str, timings_ms: Mapping[str, float]) -> None:
        """One answer, how it was found, and its stage timings (`encode_ms`, `dense_ms`, ...)."""
        self.searches.labels(how).inc()
        for name, ms in timings_ms.items():
            self.stages.labels(name.removesuffix("_ms")).observe(ms / 1000)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Time every HTTP request by route template and log one access line with its request id."""

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            method = scope["method"]
            started = time.perf_counter()
            status = 500  # what the client gets if the app raises past every handler

            async def send_and_note(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_and_note)
            except Exception as exc:
                # Raised by an inner middleware (the rate limiter): the app's handler turns it into
                # a response outside this one, with the exception's status.
                status = int(getattr(exc, "status_code", getattr(exc, "status", 500)))
                raise
            finally:
                elapsed = time.perf_counter() - started
                # The template (/v1/documents/{doc_id:str}), not the path: label values stay few.
                route = str(scope.get("path_template") or "unmatched")
                self.requests.labels(route, method, str(status)).observe(elapsed)
                _ACCESS.info(
                    "%s %s %d %.1f ms",
                    method,
                    route,
                    status,
                    elapsed * 1000,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 3)},
                )

        return timed
