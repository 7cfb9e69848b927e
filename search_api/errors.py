"""One error hierarchy, mapped to HTTP in one place, each error with a stable `code`."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from retrieval.errors import RetrievalError
from search_api.schemas import ErrorBody

logger = logging.getLogger(__name__)


class ApiError(RetrievalError):
    """An error of the HTTP request itself (body, keys, paths), as opposed to one the engine raised."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message, field=field)
        if code:
            self.code = code


class Unauthorized(ApiError):
    """No credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """Wrong credentials."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """The addressed resource does not exist."""

    status = 404
    code = "not_found"


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


# Every error a handler can answer, documented with the body it really sends (not Litestar's
# default {status_code, detail} shape), so clients and schema checkers see the truth.
ERROR_RESPONSES: dict[int, ResponseSpec] = {
    400: _spec("Invalid request: a stable `code`, a readable `message`, the `field` at fault"),
    401: _spec("Missing API key"),
    403: _spec("Wrong API key"),
    404: _spec("Not found"),
    405: _spec("Method not allowed"),
    409: _spec("Conflicting operation in progress"),
    413: _spec("Request body too large"),
    429: _spec("Rate limited"),
    502: _spec("The embedding service refused the request"),
    503: _spec("Not ready, or a dependency (store, encoder) is unavailable"),
}


_PATH = re.compile(r"at `\$\.?([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def classify_validation(message: str, key: str | None) -> tuple[str, str | None]:
    """Turn msgspec's decode message (and Litestar's key) into (code, field path)."""
    field = key if key and key != "data" else None
    if (m := _PATH.search(message)) is not None:
        # msgspec writes a dict value's position as "[...]"; the key itself is what users need.
        field = m.group(1).replace("[...]", "") or field
    if field:
        field = field.replace("[...]", "")
    lowered = message.lower()
    if "malformed" in lowered or "truncated" in lowered or message == "'data'":
        # "'data'": Litestar found no body at all.
        return "malformed_json", None
    if (m := _UNKNOWN.search(message)) is not None:
        return "unknown_field", ".".join(p for p in (field, m.group(1)) if p)
    if (m := _MISSING.search(message)) is not None:
        return "missing_field", ".".join(p for p in (field, m.group(1)) if p)
    if "Invalid enum value" in message:
        return "invalid_value", field
    return "invalid_type", field


def _body(request: Request[Any, Any, Any], code: str, message: str, field: str | None) -> ErrorBody:
    return ErrorBody(code=code, message=message, field=field, request_id=request.scope.get("request_id"))  # type: ignore[arg-type]


def api_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """Map every exception to a typed error body; unknown ones are 500 with a generic message."""
    status: int
    if isinstance(exc, RetrievalError):
        status, code, field = exc.status, exc.code, exc.field
        message = exc.message if exc.client_message is None else exc.client_message
        if exc.client_message is not None:  # the details are for the operator, not the client
            logger.error("%s on %s: %s", code, request.url.path, exc)
    elif isinstance(exc, ValidationException):
        details = [d for d in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(d, dict)]
        first = details[0] if details else {}
        text = str(first.get("message") or exc.detail)
        code, field = classify_validation(text, first.get("key"))
        status = 400
        message = "request body is not valid JSON" if code == "malformed_json" else text
    elif isinstance(exc, ClientException) and exc.status_code == 400:
        code, field = classify_validation(exc.detail, None)
        status, message = 400, exc.detail
    elif isinstance(exc, NotFoundException):
        status, code, message, field = 404, "not_found", exc.detail or "not found", None
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        code = {405: "method_not_allowed", 413: "body_too_large", 429: "rate_limited"}.get(
            status, "http_error"
        )
        message, field = exc.detail, None
    else:
        logger.exception("unhandled error on %s", request.url.path)
        status, code, message, field = HTTP_500_INTERNAL_SERVER_ERROR, "internal", "internal error", None
    # Litestar's own exceptions may carry headers the client needs (RateLimit-*, Allow).
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return Response(
        content=_body(request, code, message, field),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )
