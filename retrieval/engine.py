"""Wiring: settings in, a started `SearchPipeline` out. Used by the API, the CLIs and eval."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from retrieval.documents import lexicon_from, read_jsonl
from retrieval.encoders.build import BuiltModel, ensure_model
from retrieval.encoders.factory import remote_config_from_env, remote_encoder
from retrieval.encoders.local import OnnxEncoder
from retrieval.encoders.protocol import Encoder, EncoderRejected, EncoderUnavailable
from retrieval.encoders.remote import PROVIDERS, RemoteEncoder
from retrieval.fusion import WeightedRRF
from retrieval.pipeline import PipelineConfig, SearchPipeline
from retrieval.reindex import resume_journals, spec_for_model_id, summarize
from retrieval.routing.classifier import ModelMismatch as RoutingModelMismatch
from retrieval.routing.router import Router, load_router
from retrieval.settings import PROJECT_ROOT, Settings
from retrieval.sparse.bm25 import Bm25Params, Bm25Statistics
from retrieval.sparse.encoder import Bm25Encoder
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.store.milvus import store_for
from retrieval.store.pointer import pointer_for
from retrieval.store.protocol import ModelMismatch

logger = logging.getLogger(__name__)


def model_build_dir(settings: Settings) -> Path:
    """Folder of the ONNX build of the configured checkpoint (one folder per checkpoint)."""
    name = Path(settings.model.checkpoint).name if settings.model.checkpoint else "m3e-small"
    return settings.model_dir / name


def ensure_built_model(settings: Settings, progress: Callable[[str], None] | None = None) -> BuiltModel:
    """Build the configured checkpoint into the data folder unless a complete build is there."""
    checkpoint = Path(settings.model.checkpoint) if settings.model.checkpoint else None
    return ensure_model(model_build_dir(settings), checkpoint, progress=progress)


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


async def wait_for_remote(
    encoder: RemoteEncoder, on_wait: Callable[[str], None], poll_s: float = 2.0
) -> None:
    """Block until a remote encoder knows its dimension (needed to open or create a collection).

    With EMBEDDING_API_DIM set this returns at once, so the service starts (degraded) even while
    the embedding service is down; otherwise it polls the service's health endpoint.
    """
    while True:
        try:
            await encoder.discover_dim()
            return
        except (EncoderUnavailable, EncoderRejected) as exc:
            on_wait(f"waiting for the embedding service: {exc}")
            await asyncio.sleep(poll_s)


def lexicon_paths(settings: Settings) -> list[Path]:
    """Configured lexicon files, resolved against the project root."""
    return [p if p.is_absolute() else PROJECT_ROOT / p for p in map(Path, settings.sparse.lexicon)]


def build_tokenizer(settings: Settings) -> JiebaTokenizer:
    """jieba with the domain lexicon loaded."""
    words = lexicon_from([p for p in lexicon_paths(settings) if p.exists()])
    return JiebaTokenizer(words, mode=settings.sparse.mode, cache_dir=settings.service.data_dir / "jieba")


async def open_pipeline(
    settings: Settings,
    *,
    collection: str | None = None,
    encoder: Encoder | None = None,
    tokenizer: JiebaTokenizer | None = None,
) -> SearchPipeline:
    """Build the model if needed, open the collection, load BM25 statistics, and start."""
    if encoder is None:
        encoder = local_encoder(settings, ensure_built_model(settings, progress=logger.info))
    # The pointer names the live physical collection (another one after a reindex swapped it in).
    name = collection or await pointer_for(settings).active()
    store = store_for(settings, name)
    params = Bm25Params(settings.sparse.k1, settings.sparse.b, settings.sparse.epsilon)
    sparse = Bm25Encoder(tokenizer or build_tokenizer(settings), Bm25Statistics(params))
    fuser = WeightedRRF(
        k=settings.fusion.k,
        weights={"dense": settings.fusion.dense_weight, "sparse": settings.fusion.sparse_weight},
    )
    config = PipelineConfig(
        chunk_max_chars=settings.chunking.max_chars,
        chunk_min_chars=settings.chunking.min_chars,
        head_repeats=settings.chunking.head_repeats,
        candidates=settings.fusion.candidates,
        reweight_drift=settings.sparse.reweight_drift,
        stats_path=settings.service.data_dir / "bm25" / f"{name}.json",
    )
    router = build_router(settings, encoder.model_id, sparse.tokenizer) if settings.routing.enabled else None
    pipeline = SearchPipeline(encoder, sparse, store, fuser, config, router=router)
    try:
        await pipeline.start()
    except ModelMismatch as exc:
        await store.close()
        if collection is not None:
            raise
        raise ModelMismatch(f"{exc} {await _mismatch_advice(settings, name)}") from exc
    except BaseException:
        await store.close()
        raise
    if collection is None:
        resume_journals(pipeline, settings)
    return pipeline


LOCAL_SPECS: Final = {"local": "int8", "local-fp32": "fp32"}
"""Encoder specs of the configured local ONNX model, by precision."""


def parse_spec(spec: str) -> tuple[str, str]:
    """An encoder spec as (provider, model): ("local", "int8"|"fp32") or ("ollama"|"openai", model).

    Specs: ``local`` (the configured model, INT8), ``local-fp32``, ``ollama/<model>``,
    ``openai/<model>``. Raises ValueError for anything else.
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


def encoder_from_spec(spec: str, settings: Settings, environ: Mapping[str, str] | None = None) -> Encoder:
    """The encoder a spec names (see `parse_spec`); may build the local model, so it can be slow.

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


def _spec_settings(spec: str) -> str:
    try:
        provider, model = parse_spec(spec)
    except ValueError:
        return f"the encoder it was built with ({spec})"
    if provider == "local":
        return f"EMBEDDING_PROVIDER unset (or local) and SEARCH_MODEL_PRECISION={model}"
    return f"EMBEDDING_PROVIDER={provider} EMBEDDING_API_MODEL={model}"


async def _mismatch_advice(settings: Settings, active: str) -> str:
    """What to do when the configured encoder is not the active collection's model."""
    pointer = pointer_for(settings)
    current = await summarize(settings, active, pointer)
    spec = current.spec or (spec_for_model_id(current.model_id) if current.model_id else None)
    advice = [f"The active collection {active!r} serves {spec or current.model_id!r}"]
    if spec is not None:
        advice.append(f"start with {_spec_settings(spec)}")
    previous = await pointer.previous()
    if previous is not None:
        before = (await pointer.state()).spec_of(previous)
        advice.append(
            f"return to {previous!r} ({before or 'its model'}) with `search-api reindex --rollback`"
        )
    advice.append("or re-embed it for the configured model with `search-api reindex --to <spec>`")
    return "; ".join(advice) + "."


def build_router(settings: Settings, model_id: str, tokenizer: JiebaTokenizer) -> Router | None:
    """The intent router for this encoder, or None (logged) when its head was trained on another model."""
    try:
        return load_router(
            settings.routing.table,
            model_id=model_id,
            base_dir=settings.service.data_dir,
            entities=tokenizer.entities,
        )
    except RoutingModelMismatch as exc:
        logger.warning("routing off: %s (retrain with `search-api intents train`)", exc)
        return None


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def ingest_fixtures(pipeline: SearchPipeline, settings: Settings) -> int:
    """Upsert the fixture knowledge base unless this exact file was already ingested here."""
    path = settings.service.fixtures_path
    if not path.exists():
        logger.warning("fixtures file %s not found; starting with what the store holds", path)
        return 0
    if pipeline.config.stats_path is None:
        raise ValueError("ingest_fixtures needs a pipeline with a stats_path")
    marker = pipeline.config.stats_path.with_suffix(".fixtures.sha256")
    digest = file_digest(path)
    if marker.exists() and marker.read_text().strip() == digest and pipeline.stats.n_docs > 0:
        return 0
    docs = [d.validate() for d in read_jsonl(path)]
    report = await pipeline.ingest(docs)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest)
    logger.info("ingested %d fixture documents (%d chunks)", report.documents, report.chunks)
    return report.documents
