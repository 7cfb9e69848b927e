"""Wiring: settings in, a started `SearchPipeline` out. Used by the API, the CLIs and eval."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from retrieval.documents import lexicon_from, read_jsonl
from retrieval.encoders.build import BuiltModel, ensure_model
from retrieval.encoders.local import OnnxEncoder
from retrieval.encoders.protocol import Encoder, EncoderRejected, EncoderUnavailable
from retrieval.encoders.remote import RemoteEncoder
from retrieval.fusion import WeightedRRF
from retrieval.pipeline import PipelineConfig, SearchPipeline
from retrieval.settings import PROJECT_ROOT, Settings
from retrieval.sparse.bm25 import Bm25Params, Bm25Statistics
from retrieval.sparse.encoder import Bm25Encoder
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.store.milvus import MilvusStore

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
        max_batch=settings.model.max_batch,
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
    name = collection or settings.store.collection
    store = MilvusStore(
        settings.milvus_uri, name, token=settings.store.token, timeout_s=settings.store.timeout_s
    )
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
    pipeline = SearchPipeline(encoder, sparse, store, fuser, config)
    try:
        await pipeline.start()
    except BaseException:
        await store.close()
        raise
    return pipeline


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
