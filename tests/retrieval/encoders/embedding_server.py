"""A real HTTP embedding service for tests, speaking Ollama's and OpenAI's wire formats.

It stands in for the remote service only; the client under test talks to it over real sockets.
Vectors are deterministic hashed character bags (`hashed_vector`), deliberately not normalised, so
the client's normalisation is exercised. Faults are queued from the test thread and consumed by
the next requests::

    with EmbeddingServer(dim=24) as server:
        server.fail_next(2, status=503)       # then succeed
        server.reject_next(400, "too long")   # provider-shaped error body
        server.corrupt_next(1, "count")       # a 200 reply with one vector missing
        server.delay_s = 0.5                  # every reply waits this long
        server.stop(); server.start()         # down and back up on the same port
        server.embed_requests, server.batch_sizes, server.max_in_flight

Endpoints: ``POST /api/embed``, ``GET /api/tags``, ``POST /v1/embeddings``, ``GET /v1/models``.
With `api_key` set every endpoint demands ``Authorization: Bearer <api_key>`` and answers 401 in
the provider's format otherwise (echoing the rejected key, as some services do, so tests can check
the client redacts it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import socketserver
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

CorruptionKind = Literal["count", "ragged", "nan", "not_json", "no_vectors"]


def hashed_vector(text: str, dim: int) -> list[float]:
    """Bag of characters hashed into `dim` slots: texts sharing characters point the same way."""
    vec = [0.0] * dim
    for ch in text:
        slot = int.from_bytes(hashlib.blake2b(ch.encode(), digest_size=4).digest(), "big") % dim
        vec[slot] += 1.0
    return vec


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def inputs(self) -> list[str]:
        """The texts of an embed request (``input`` may be a string or a list)."""
        raw = self.body.get("input") if isinstance(self.body, dict) else None
        return [raw] if isinstance(raw, str) else list(raw or [])


@dataclass
class _Fault:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class _HTTPServer(ThreadingHTTPServer):
    owner: EmbeddingServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Sockets cut by stop() make handler threads fail mid-write; that is the point, not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real service, so stop() must cut connections
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms to each.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class EmbeddingServer:
    """The fake service; see the module docstring. Thread-safe: handlers run in their own threads."""

    def __init__(
        self,
        *,
        dim: int = 24,
        ollama_models: Sequence[str] = ("qwen3-embedding:0.6b",),
        openai_models: Sequence[str] = ("text-embedding-3-small",),
        api_key: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.dim = dim
        self.ollama_models = list(ollama_models)
        self.openai_models = list(openai_models)
        self.api_key = api_key
        self.host = host
        self.delay_s = 0.0
        """Every reply waits this long (cut short by stop())."""
        self.ollama_shape: Literal["embeddings", "embedding"] = "embeddings"
        """``embedding`` answers with the single-vector shape, whatever the input count."""
        self.openai_reversed = False
        """List OpenAI rows in reverse (their ``index`` fields stay right)."""
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._corruptions: deque[CorruptionKind] = deque()
        self._records: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> EmbeddingServer:
        """Listen (on the same port as before after a stop, else on a free one)."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._port), _Handler)
        httpd.owner = self
        self._port = int(httpd.server_address[1])
        self._stopping = threading.Event()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="embedding-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashed service would."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; stable across stop/start."""
        if not self._port:
            raise RuntimeError("start the server first")
        return f"http://{self.host}:{self._port}"

    # -- faults ---------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, *, retry_after: float | None = None) -> None:
        """The next `n` requests (any endpoint) answer `status` with a provider-shaped error."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        with self._lock:
            self._faults.extend(_Fault(status, "simulated failure", headers) for _ in range(n))

    def reject_next(self, status: int = 400, message: str = "invalid input") -> None:
        """The next request answers `status` with `message` in the provider's error format."""
        with self._lock:
            self._faults.append(_Fault(status, message))

    def corrupt_next(self, n: int = 1, kind: CorruptionKind = "count") -> None:
        """The next `n` embed requests answer 200 with a broken reply of the given kind."""
        with self._lock:
            self._corruptions.extend([kind] * n)

    # -- records --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def embed_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path in ("/api/embed", "/v1/embeddings")]

    @property
    def batch_sizes(self) -> list[int]:
        return [len(r.inputs) for r in self.embed_requests]

    @property
    def max_in_flight(self) -> int:
        """Most requests handled at once since the last `reset_records()`."""
        with self._lock:
            return self._max_in_flight

    def reset_records(self) -> None:
        with self._lock:
            self._records.clear()
            self._max_in_flight = self._in_flight

    def vector(self, text: str) -> list[float]:
        """The (unnormalised) vector this server returns for `text`."""
        return hashed_vector(text, self.dim)

    # -- request handling (handler threads) -----------------------------------------------------

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = handler.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in handler.headers.items()}
        stopping = self._stopping
        with self._lock:
            self._records.append(RecordedRequest(handler.command, path, headers, body))
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if self.delay_s > 0 and stopping.wait(self.delay_s):
                return  # stopped while "working": the connection is being cut, send nothing
            status, payload, extra = self._route(handler.command, path, headers, body)
            _write(handler, status, payload, extra)
        except OSError:
            pass  # the client gave up (timeout) or stop() cut the socket
        finally:
            with self._lock:
                self._in_flight -= 1

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        openai = path.startswith("/v1/")
        routes = {
            ("POST", "/api/embed"): self._ollama_embed,
            ("GET", "/api/tags"): self._ollama_tags,
            ("POST", "/v1/embeddings"): self._openai_embed,
            ("GET", "/v1/models"): self._openai_models,
        }
        route = routes.get((method, path))
        if route is None:
            return 404, b"404 page not found", {"Content-Type": "text/plain"}
        if self.api_key is not None:
            given = headers.get("authorization", "")
            if given != f"Bearer {self.api_key}":
                shown = given.removeprefix("Bearer ")
                return 401, _error(openai, f"Incorrect API key provided: {shown}", "invalid_api_key"), {}
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            return fault.status, _error(openai, fault.message), fault.headers
        return route(body)

    def _take_corruption(self) -> CorruptionKind | None:
        with self._lock:
            return self._corruptions.popleft() if self._corruptions else None

    def _vectors(self, texts: list[str]) -> list[list[float]]:
        vectors = [self.vector(t) for t in texts]
        kind = self._take_corruption()
        if kind == "count":
            vectors = vectors[:-1]
        elif kind == "ragged" and vectors:
            vectors[-1] = [*vectors[-1], 1.0]
        elif kind == "nan" and vectors:
            vectors[0][0] = float("nan")  # json.dumps writes NaN, which Python's json accepts
        elif kind in ("not_json", "no_vectors"):
            raise _Corrupt(kind)
        return vectors

    def _ollama_embed(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        texts = _texts(body)
        if texts is None:
            return 400, {"error": "invalid input type"}, {}
        model = body.get("model")
        if model not in self.ollama_models and f"{model}:latest" not in self.ollama_models:
            return 404, {"error": f'model "{model}" not found, try pulling it first'}, {}
        try:
            vectors = self._vectors(texts)
        except _Corrupt as corrupt:
            return corrupt.reply()
        if self.ollama_shape == "embedding":
            return 200, {"embedding": vectors[0] if vectors else []}, {}
        reply = {"model": model, "embeddings": vectors, "total_duration": 1000, "load_duration": 10}
        return 200, {**reply, "prompt_eval_count": sum(len(t) for t in texts)}, {}

    def _ollama_tags(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": "2025-06-01T00:00:00Z",
                "size": 639_000_000,
                "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": {"format": "gguf", "family": "qwen3", "parameter_size": "595.78M"},
            }
            for name in self.ollama_models
        ]
        return 200, {"models": models}, {}

    def _openai_embed(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        texts = _texts(body)
        if texts is None:
            return 400, _error(True, "'input' must be a string or an array of strings"), {}
        model = body.get("model")
        if model not in self.openai_models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return 404, _error(True, message, "model_not_found"), {}
        try:
            vectors = self._vectors(texts)
        except _Corrupt as corrupt:
            return corrupt.reply()
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        if self.openai_reversed:
            data.reverse()
        tokens = sum(len(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return 200, {"object": "list", "data": data, "model": model, "usage": usage}, {}

    def _openai_models(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        data = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "test"}
            for m in self.openai_models
        ]
        return 200, {"object": "list", "data": data}, {}


class _Corrupt(Exception):
    def __init__(self, kind: CorruptionKind) -> None:
        super().__init__(kind)
        self.kind = kind

    def reply(self) -> tuple[int, Any, dict[str, str]]:
        if self.kind == "not_json":
            return 200, b"<html>upstream hiccup</html>", {"Content-Type": "text/html"}
        return 200, {"status": "ok"}, {}


def _texts(body: Any) -> list[str] | None:
    raw = body.get("input") if isinstance(body, dict) else None
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        return raw
    return None


def _error(openai: bool, message: str, code: str | None = None) -> Any:
    if openai:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return {"error": message}


def _write(handler: _Handler, status: int, payload: Any, headers: dict[str, str]) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    handler.send_response(status)
    headers = {"Content-Type": "application/json; charset=utf-8", **headers}
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()
