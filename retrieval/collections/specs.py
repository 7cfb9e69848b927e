"""Encoder specs: the names a collection records for the encoder that built it, and building it.

Specs: ``local`` (the configured local model, INT8), ``local-fp32``, ``ollama/<model>``,
``openai/<model>``. A collection's pointer entry records its spec, so a rollback (or a restart
with the wrong configuration) can name, and build, the encoder the collection needs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from retrieval.encoders.build import BuiltModel, ensure_model, needs_build
from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.local import OnnxEncoder
from retrieval.encoders.protocol import Encoder
from retrieval.encoders.remote_config import PROVIDERS, remote_config_from_env
from retrieval.settings import Settings

logger = logging.getLogger(__name__)

LOCAL_SPECS: Final = {"local": "int8", "local-fp32": "fp32"}
"""Encoder specs of the configured local ONNX model, by precision."""


def parse_spec(spec: str) -> tuple[str, str]:
    """An encoder spec as (provider, model): ("local", "int8"|"fp32") or ("ollama"|"openai", model).

    Raises ValueError for anything else.
    """
    text = spec.strip()
    if text in LOCAL_SPECS:
        return "local", LOCAL_SPECS[text]
    provider, _, model = text.partition("/")
    if provider in PROVIDERS and model.strip():
        return provider, model.strip()
    raise ValueError(
        f"encoder spec must be local, local-fp32, ollama/<model> or openai/<model>, not {spec!r}"
    )


def spec_for_model_id(model_id: str) -> str:
    """The encoder spec that rebuilds the encoder of a recorded model id.

    Remote model ids are ``provider/model`` already; the local model is ``local`` (INT8) or
    ``local-fp32`` (its model id carries a ``-fp32`` suffix).
    """
    provider, _, model = model_id.partition("/")
    if provider in PROVIDERS and model:
        return model_id
    return "local-fp32" if model_id.endswith("-fp32") else "local"


def spec_settings(spec: str) -> str:
    """The configuration that serves a spec, as a user would set it."""
    try:
        provider, model = parse_spec(spec)
    except ValueError:
        return f"the encoder it was built with ({spec})"
    if provider == "local":
        return f"EMBEDDING_PROVIDER unset (or local) and SEARCH_MODEL_PRECISION={model}"
    return f"EMBEDDING_PROVIDER={provider} EMBEDDING_API_MODEL={model}"


def ensure_built_model(
    settings: Settings, progress: Callable[[str], None] | None = None, *, lock_held: bool = False
) -> BuiltModel:
    """Build the configured checkpoint into the data folder unless a complete build is there.

    `lock_held`: the caller holds the build lock already (see `hold_build_lock`).
    """
    checkpoint = Path(settings.model.checkpoint) if settings.model.checkpoint else None
    return ensure_model(settings.model_build_dir, checkpoint, progress=progress, lock_held=lock_held)


def model_needs_build(settings: Settings) -> bool:
    """Whether `ensure_built_model` would build (cheap: compares names, hashes nothing)."""
    checkpoint = Path(settings.model.checkpoint) if settings.model.checkpoint else None
    return needs_build(settings.model_build_dir, checkpoint)


def local_encoder(settings: Settings, model: BuiltModel) -> OnnxEncoder:
    """The ONNX encoder for a built model at the configured precision."""
    if settings.model.precision not in {"int8", "fp32"}:
        raise ValueError(f"model.precision must be int8 or fp32, not {settings.model.precision!r}")
    path = model.int8_path if settings.model.precision == "int8" else model.fp32_path
    # FP32 and INT8 vectors differ slightly, so each precision is its own model id.
    suffix = "" if settings.model.precision == "int8" else "-fp32"
    return OnnxEncoder(
        path,
        model.tokenizer_path,
        model_id=f"{model.model_id}{suffix}",
        max_length=model.max_length,
        intra_op_threads=settings.model.intra_op_threads,
        batch_window_ms=settings.model.batch_window_ms,
        allow_spinning=settings.model.allow_spinning,
        max_batch=settings.model.max_batch,
        query_prefix=model.query_prefix,
        passage_prefix=model.passage_prefix,
    )


def encoder_from_spec(spec: str, settings: Settings, environ: Mapping[str, str] | None = None) -> Encoder:
    """The encoder a spec names; may build the local model, so it can be slow.

    A remote spec takes the service's URL, key and tuning from the configured remote encoder when
    it is the same provider, else from the EMBEDDING_* variables of `environ` (default
    `os.environ`), with the model replaced.
    """
    provider, model = parse_spec(spec)
    if provider == "local":
        local = dataclasses.replace(settings, model=dataclasses.replace(settings.model, precision=model))
        return local_encoder(local, ensure_built_model(local, progress=logger.info))
    base = settings.remote_encoder
    if base is None or base.provider != provider:
        env = {**(os.environ if environ is None else environ), "EMBEDDING_PROVIDER": provider}
        base = remote_config_from_env(env)
        if base is None:  # cannot happen with a remote provider set; keeps the types honest
            raise ValueError(f"no remote configuration for {spec!r}")
    # EMBEDDING_API_DIM describes the configured model; another model has its own dimension.
    dim = base.dim if base.model == model else None
    return remote_encoder(dataclasses.replace(base, model=model, dim=dim))
