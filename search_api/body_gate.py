"""Every request body passes one gate before any handler sees it: size, encoding, syntax, types.

Litestar decodes bodies leniently (`"top_k": "10"` would become 10) and lets a body that is not
UTF-8 surface as an internal error; a body over the limit is cut off mid-upload, which a client
sees as a reset connection rather than the 413 it should read. So the gate, as ASGI middleware:

1. refuses a declared `Content-Length` over the limit without keeping a byte, and stops keeping
   a chunked body at the limit (413 `body_too_large`); before answering it reads and discards the
   rest of the upload (up to `DRAIN_BYTES`), so the client finishes sending and reads the answer;
2. refuses bytes that are not UTF-8, or begin with a byte-order mark (400 `invalid_encoding`);
3. refuses what is not JSON (400 `malformed_json`), JSON nested deeper than `MAX_DEPTH`
   (400 `nesting_too_deep`), numbers past a 64-bit integer or a double (400
   `number_out_of_range`), and text holding a NUL character anywhere (400 `invalid_character`:
   one rule for every body, as for documents read from files);
4. for a route with a declared body type, decodes it strictly (no string-to-number coercion),
   answering the same codes the handlers' own validation uses (`invalid_type`, `unknown_field`...).

What passes is handed on unchanged, so the handler decodes exactly the bytes the gate checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from search_api.errors import classify_validation
from search_api.schemas import ErrorBody

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a body may have (the deepest real body has 4)."""
DRAIN_BYTES = 64 * 1024 * 1024
"""How much of a refused upload is read and thrown away so the client can read the 413."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_BOM = b"\xef\xbb\xbf"
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class Refused(Exception):
    """A body the gate refuses: status, stable code, message and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def _check_tree(value: Any) -> None:
    """Depth and NUL checks over a decoded JSON value, iteratively (a deep body cannot recurse us)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise Refused(400, "invalid_character", "text must not contain NUL characters", path or None)
        elif isinstance(node, int) and not isinstance(node, bool) and not -(2**63) <= node < 2**63:
            raise Refused(400, "number_out_of_range", "integers must fit in 64 bits", path or None)
        elif isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise Refused(400, "nesting_too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(node, dict):
                for key, item in node.items():
                    child = f"{path}.{key}" if path else str(key)
                    if "\x00" in key:
                        raise Refused(
                            400, "invalid_character", "keys must not contain NUL characters", path or None
                        )
                    stack.append((item, depth + 1, child))
            else:
                stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(node))


def check_body(body: bytes, schema: type | None) -> None:
    """Raise `Refused` unless `body` is UTF-8 JSON within the limits (of type `schema`, if given)."""
    if body.startswith(_BOM):
        raise Refused(400, "invalid_encoding", "the body starts with a byte-order mark; send plain UTF-8")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, "invalid_encoding", f"the body is not UTF-8 (byte {exc.start})") from exc
    if not body.strip():
        if schema is None:
            return  # a route without a body (a flush, a rollback) may be posted to empty
        raise Refused(400, "malformed_json", "request body is empty")
    try:
        value = _decoder.decode(body)
    except msgspec.ValidationError as exc:  # msgspec's word for a number too large for a float
        raise Refused(400, "number_out_of_range", f"a number in the body is out of range: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise Refused(400, "malformed_json", f"request body is not valid JSON: {exc}") from exc
    _check_tree(value)
    if schema is None:
        return
    try:
        msgspec.convert(value, schema, strict=True)
    except msgspec.ValidationError as exc:
        code, field = classify_validation(str(exc), None)
        raise Refused(400, code, str(exc), field) from exc


def body_gate(app: ASGIApp, *, max_bytes: int, schemas: Mapping[str, type]) -> ASGIApp:
    """Wrap `app` so every body (typed by `schemas`, path -> body struct) passes `check_body` first."""

    async def gate(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] not in _BODY_METHODS:
            await app(scope, receive, send)
            return
        declared = _content_length(scope)
        try:
            if declared is not None and declared > max_bytes:
                message = f"the body is {declared} bytes; the limit is {max_bytes}"
                raise TooLarge(message, unread=declared > 0)
            body = await _read(receive, max_bytes)
            check_body(body, schemas.get(scope["path"]))
        except Refused as refused:
            if isinstance(refused, TooLarge) and refused.unread:
                # Before answering: once a response is complete the server reads no more, and
                # closing on an unread upload resets the connection under the client.
                await _drain(receive)
            await _refuse(scope, send, refused)
            return
        await app(scope, _replay(body, receive), send)

    return gate


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class TooLarge(Refused):
    """A body over the limit; `unread` tells whether the client is still sending the rest."""

    def __init__(self, message: str, *, unread: bool):
        super().__init__(413, "body_too_large", message)
        self.unread = unread


async def _read(receive: Receive, max_bytes: int) -> bytes:
    """The whole body; `TooLarge` once it passes `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app sees the disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > max_bytes:
            raise TooLarge(f"the body is over the limit of {max_bytes} bytes", unread=more)
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _drain(receive: Receive) -> None:
    # Read what the client is still sending, so it finishes the upload and reads the 413 instead
    # of a connection reset; past DRAIN_BYTES the server closes the connection as before.
    drained = 0
    while drained < DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _refuse(scope: Scope, send: Send, refused: Refused) -> None:
    body = _encoder.encode(
        ErrorBody(
            code=refused.code,
            message=refused.message,
            field=refused.field,
            request_id=scope.get("request_id"),  # type: ignore[arg-type]
        )
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": refused.status,
        "headers": headers,
    }
    await send(start)
    done: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(done)
