"""The engine: settings in, a started knowledge base and the search service over it out.

`open_engine` is the one way every caller (the API, the CLIs, `search-eval`, the benchmarks)
gets a working engine, so what is measured is what is served. `Engine` then owns search
(`service`), writes (`kb`), switching collections (`collections`) and the cache, and closes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from retrieval.cache.factory import build_cache
from retrieval.cache.protocol import Cache
from retrieval.collections.manager import CollectionManager, mismatch_advice
from retrieval.collections.reindex import resume_journals
from retrieval.collections.specs import ensure_built_model, local_encoder
from retrieval.collections.stores import pointer_for, store_for
from retrieval.documents import lexicon_from, read_jsonl
from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.local import OnnxEncoder
from retrieval.encoders.protocol import Encoder
from retrieval.errors import EncoderRejected, EncoderUnavailable, ModelMismatch, StoreUnavailable
from retrieval.fusion import WeightedRRF
from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseConfig
from retrieval.ranking.ranker import META_FILE as RANKER_META
from retrieval.ranking.ranker import LearnedRanker
from retrieval.routing.router import Router, load_router
from retrieval.service import SearchObserver, SearchService
from retrieval.settings import PROJECT_ROOT, Settings
from retrieval.sparse.bm25 import Bm25Params, Bm25Statistics
from retrieval.sparse.encoder import Bm25Encoder
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.understanding.lexicon import Lexicon, LexiconEntry
from retrieval.understanding.understander import QueryUnderstanding
from retrieval.util import file_digest

logger = logging.getLogger(__name__)

PhaseCallback = Callable[[str, str | None], None]
"""Told what start-up is doing: (phase, detail such as why it waits)."""


@dataclass
class Engine:
    """A started engine over one live collection."""

    settings: Settings
    kb: KnowledgeBase
    service: SearchService
    collections: CollectionManager
    cache: Cache | None = None

    async def close(self) -> None:
        """Stop a running reindex, flush pending cache writes, close the cache, encoder and store."""
        await self.collections.close()
        await self.service.drain()
        if self.cache is not None:
            await self.cache.close()
        await self.kb.close()


def lexicon_paths(settings: Settings) -> list[Path]:
    """Configured lexicon files, resolved against the project root."""
    return [p if p.is_absolute() else PROJECT_ROOT / p for p in map(Path, settings.sparse.lexicon)]


def build_tokenizer(settings: Settings) -> JiebaTokenizer:
    """jieba with the domain lexicon loaded."""
    words = lexicon_from([p for p in lexicon_paths(settings) if p.exists()])
    return JiebaTokenizer(words, mode=settings.sparse.mode, cache_dir=settings.data.dir / "jieba")


def build_understanding(settings: Settings) -> QueryUnderstanding:
    """Query understanding over the lexicon files' entries (titles, aliases, texts) and word lists."""
    entries: list[LexiconEntry] = []
    names: list[str] = []
    for path in (p for p in lexicon_paths(settings) if p.exists()):
        if path.suffix == ".jsonl":
            entries.extend(
                LexiconEntry(d.title, tuple(d.aliases), d.text) for d in read_jsonl(path) if d.title
            )
        else:
            names.extend(lexicon_from([path]))
    return QueryUnderstanding(Lexicon.build(entries, names), settings.understanding)


def build_router(settings: Settings, model_id: str, tokenizer: JiebaTokenizer) -> Router | None:
    """The intent router for this encoder, or None (logged) when its head was trained on another model."""
    if not settings.routing.enabled:
        return None
    try:
        return load_router(
            settings.routing.table,
            model_id=model_id,
            base_dir=settings.data.dir,
            entities=tokenizer.entities,
        )
    except ModelMismatch as exc:
        logger.warning("routing off: %s (retrain with `search-api intents train`)", exc)
        return None


SHIPPED_RANKERS = PROJECT_ROOT / "fixtures" / "ranking"
"""Rankers trained by `search-api rank train`, one folder per encoder model id (PROVENANCE.md there)."""


def ranker_folder(settings: Settings, model_id: str) -> Path | None:
    """Where the ranker for `model_id` is: the configured folder, the data folder's, the shipped one."""
    if settings.fusion.ranker:
        configured = Path(settings.fusion.ranker)
        return configured if configured.is_absolute() else PROJECT_ROOT / configured
    for folder in (settings.data.dir / "ranking" / model_id, SHIPPED_RANKERS / model_id):
        if (folder / RANKER_META).is_file():
            return folder
    return None


def load_ranker(settings: Settings, model_id: str) -> LearnedRanker | None:
    """The learned ranker for this encoder, or None (logged): then "learned" answers with RRF.

    A ranker reads the dense scores of the model it was trained with, so one trained on another
    model is refused rather than fed scores of another scale.
    """
    if settings.fusion.method != "learned":
        return None
    folder = ranker_folder(settings, model_id)
    if folder is None:
        logger.warning("no ranker for %s: fusion falls back to RRF (`search-api rank train`)", model_id)
        return None
    try:
        ranker = LearnedRanker.load(folder)
    except ModelMismatch as exc:
        logger.warning("ranker in %s unusable, fusion falls back to RRF: %s", folder, exc)
        return None
    if ranker.model_id != model_id:
        logger.warning(
            "ranker in %s was trained on %s, not %s: fusion falls back to RRF",
            folder,
            ranker.model_id,
            model_id,
        )
        return None
    return ranker


async def open_knowledge_base(
    settings: Settings,
    encoder: Encoder,
    *,
    collection: str | None = None,
    tokenizer: JiebaTokenizer | None = None,
) -> KnowledgeBase:
    """Open (or create) the live collection, or `collection`, and load BM25 statistics that match it."""
    # The pointer names the live physical collection (another one after a reindex swapped it in).
    name = collection or await pointer_for(settings).active()
    store = store_for(settings, name)
    params = Bm25Params(settings.sparse.k1, settings.sparse.b, settings.sparse.epsilon)
    sparse = Bm25Encoder(tokenizer or build_tokenizer(settings), Bm25Statistics(params))
    config = KnowledgeBaseConfig(
        chunk_max_chars=settings.chunking.max_chars,
        chunk_min_chars=settings.chunking.min_chars,
        head_repeats=settings.chunking.head_repeats,
        reweight_drift=settings.sparse.reweight_drift,
        stats_path=settings.data.dir / "bm25" / f"{name}.json",
    )
    kb = KnowledgeBase(encoder, sparse, store, config)
    try:
        await kb.start()
    except ModelMismatch as exc:
        await store.close()
        if collection is not None:
            raise
        raise ModelMismatch(f"{exc} {await mismatch_advice(settings, name)}") from exc
    except BaseException:
        await store.close()
        raise
    if collection is None:
        resume_journals(kb, settings)
    return kb


async def configured_encoder(settings: Settings, phase: PhaseCallback | None = None) -> Encoder:
    """The encoder the settings configure: the remote service (waited for) or the local model (built)."""
    phase = phase or (lambda _phase, _detail: None)
    if settings.remote_encoder is not None:
        remote = remote_encoder(settings.remote_encoder)
        phase("waiting for the embedding service", None)
        # With EMBEDDING_API_DIM set this returns at once, so the service starts (degraded) even
        # while the embedding service is down; otherwise it polls until the service answers.
        while True:
            try:
                await remote.discover_dim()
                return remote
            except (EncoderUnavailable, EncoderRejected) as exc:
                detail = f"waiting for the embedding service: {exc}"
                logger.warning(detail)
                phase("waiting for the embedding service", detail)
                await asyncio.sleep(2.0)
    phase("building model", None)
    model = await asyncio.to_thread(ensure_built_model, settings, logger.info)
    return await asyncio.to_thread(local_encoder, settings, model)


async def _open_waiting(
    settings: Settings,
    encoder: Encoder,
    collection: str | None,
    phase: PhaseCallback,
    tokenizer: JiebaTokenizer,
) -> KnowledgeBase:
    """Open the knowledge base, waiting while Milvus cannot be reached.

    Milvus may start after the API (or restart meanwhile): the caller stays up, says so, and
    opens the store once Milvus answers.
    """
    delay = 0.5
    while True:
        phase("opening store", None)
        try:
            return await open_knowledge_base(settings, encoder, collection=collection, tokenizer=tokenizer)
        except StoreUnavailable as exc:
            detail = f"Milvus unreachable ({exc}); retrying in {delay:.1f} s"
            logger.warning(detail)
            phase("waiting for the vector store", detail)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def open_engine(
    settings: Settings,
    *,
    encoder: Encoder | None = None,
    collection: str | None = None,
    cache: bool = True,
    ingest_fixtures: bool | None = None,
    wait_for_store: bool = False,
    registry: CollectorRegistry | None = None,
    observer: SearchObserver | None = None,
    on_phase: PhaseCallback | None = None,
) -> Engine:
    """Build what is missing (model, intent head), open the collection, start the cache, ingest fixtures.

    `encoder` replaces the configured one (tests, a reindex's source model); `collection` opens
    that physical collection instead of the live one; `cache=False` leaves the cache off whatever
    the settings say; `ingest_fixtures` overrides `data.ingest_fixtures`; `wait_for_store` retries
    while Milvus is unreachable (the server's start-up) instead of raising `StoreUnavailable`.
    """
    phase = on_phase or (lambda _phase, _detail: None)
    # jieba's dictionary and the lexicon load (most of a second) while the model is built or loaded.
    tokenizing = asyncio.ensure_future(asyncio.to_thread(build_tokenizer, settings))
    try:
        if encoder is None:
            encoder = await configured_encoder(settings, phase)
            if (
                isinstance(encoder, OnnxEncoder)
                and settings.routing.enabled
                and settings.routing.train_on_start
            ):
                phase("training the intent classifier", None)
                # Training is imported only here, when a first start has to train.
                from retrieval.training.intents.bootstrap import ensure_default_head

                await asyncio.to_thread(ensure_default_head, settings, encoder)
        tokenizer = await tokenizing
    except BaseException:
        tokenizing.cancel()
        raise
    if wait_for_store:
        kb = await _open_waiting(settings, encoder, collection, phase, tokenizer)
    else:
        phase("opening store", None)
        kb = await open_knowledge_base(settings, encoder, collection=collection, tokenizer=tokenizer)
    try:
        service = SearchService(
            kb,
            WeightedRRF(
                k=settings.fusion.k,
                weights={"dense": settings.fusion.dense_weight, "sparse": settings.fusion.sparse_weight},
            ),
            candidates=settings.fusion.candidates,
            rank_depth=settings.fusion.rank_depth,
            router=build_router(settings, encoder.model_id, kb.sparse.tokenizer),
            understanding=build_understanding(settings),
            observer=observer,
            fusion=settings.fusion.method,
            ranker=load_ranker(settings, encoder.model_id),
        )
        engine = Engine(settings, kb, service, CollectionManager(settings, kb))
        if cache and settings.cache.enabled:
            engine.cache = build_cache(settings.cache, registry=registry)
            await engine.cache.start()
            # Every committed write makes every cached answer (in every worker) stale.
            kb.write_listeners.append(engine.cache.bump_version)
            service.cache = engine.cache
        if settings.data.ingest_fixtures if ingest_fixtures is None else ingest_fixtures:
            phase("ingesting fixtures", None)
            await ingest_fixture_file(kb, settings)
    except BaseException:
        await kb.close()
        raise
    return engine


async def ingest_fixture_file(kb: KnowledgeBase, settings: Settings) -> int:
    """Upsert the fixture knowledge base unless this exact file was already ingested here."""
    path = settings.data.fixtures
    if not path.exists():
        logger.warning("fixtures file %s not found; starting with what the store holds", path)
        return 0
    if kb.config.stats_path is None:
        raise ValueError("ingesting fixtures needs a knowledge base with a stats_path")
    marker = kb.config.stats_path.with_suffix(".fixtures.sha256")
    # The text analysis is part of the marker: fixtures indexed under another one are ingested again.
    digest = f"{file_digest(path)} {kb.sparse.tokenizer.analysis}"
    if marker.exists() and marker.read_text().strip() == digest and kb.stats.n_docs > 0:
        return 0
    docs = [d.validate(settings.data.max_document_chars) for d in read_jsonl(path)]
    report = await kb.ingest(docs)
    if kb.indexed_analysis != kb.sparse.tokenizer.analysis and report.chunks == kb.stats.n_docs:
        await kb.analysed_anew()  # the fixtures were the whole collection: all of it is current
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest)
    logger.info("ingested %d fixture documents (%d chunks)", report.documents, report.chunks)
    return report.documents
