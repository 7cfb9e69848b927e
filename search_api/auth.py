"""API-key guard for write endpoints. Keys are compared in constant time and never logged."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from search_api.errors import Forbidden, Unauthorized

API_KEY_HEADER = "X-API-Key"


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Require `X-API-Key` equal to the admin key when one is configured."""
    expected: str = connection.app.state.engine.settings.service.admin_key
    if not expected:
        return
    given = connection.headers.get(API_KEY_HEADER)
    if not given:
        raise Unauthorized(f"this endpoint needs the {API_KEY_HEADER} header", code="missing_api_key")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("the API key is not valid for this endpoint", code="invalid_api_key")
