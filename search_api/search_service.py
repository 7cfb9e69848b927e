"""One search request end to end: exact cache, one query encoding, semantic cache, retrieval, reply.

The query vector is computed once and serves the semantic cache, the router and dense retrieval.
A cached reply is the shared part of the response of the search that computed it, kept as JSON; a
hit splices its own `took_ms`, `cache`, `query` and `timings_ms` onto it (`search_api.reply`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from retrieval.cache.protocol import Cache, CacheKey, CacheLookup, filters_key, normalise_query
from retrieval.highlight import find_terms, mark
from retrieval.pipeline import SearchOutcome, SearchPipeline
from retrieval.types import FusedHit, SearchFilter, SearchMode, Vectors
from search_api.reply import CachedReply, encode_shared, splice
from search_api.schemas import (
    Explanation,
    Highlight,
    Hit,
    SearchRequest,
    SourceExplanation,
)
from search_api.telemetry import ServiceMetrics

logger = logging.getLogger(__name__)

# Bump when the response layout changes, so cached replies of the old layout are never served.
RESPONSE_SCHEMA = "2"


def _explain(hit: FusedHit, k: int, weights: Mapping[str, float]) -> Explanation:
    def source(name: str) -> SourceExplanation | None:
        ev = hit.sources.get(name)
        return SourceExplanation(rank=ev.rank, score=ev.score, contribution=ev.contribution) if ev else None

    return Explanation(
        dense=source("dense"), sparse=source("sparse"), fused_score=hit.score, rrf_k=k, weights=dict(weights)
    )


def build_hits(outcome: SearchOutcome, terms: list[str], k: int, weights: Mapping[str, float]) -> list[Hit]:
    """Response hits with explanation and highlights."""
    hits = []
    for h in outcome.hits:
        marks = find_terms(h.hit.text, terms)
        hits.append(
            Hit(
                id=h.hit.id,
                doc_id=h.hit.doc_id,
                title=h.hit.title,
                kind=h.hit.kind,
                text=h.hit.text,
                score=h.score,
                chunk_index=h.hit.chunk_index,
                metadata=h.hit.metadata,
                explanation=_explain(h, k, weights),
                highlights=[Highlight(start=m.start, end=m.end, term=m.term) for m in marks],
                highlighted=mark(h.hit.text, marks),
            )
        )
    return hits


@dataclass
class SearchService:
    """Cache-aware search over the pipeline."""

    cache: Cache | None = None
    metrics: ServiceMetrics | None = None
    _background: set[asyncio.Task[object]] = field(default_factory=set)

    def _key(
        self, pipeline: SearchPipeline, request: SearchRequest, query: str, where: SearchFilter
    ) -> CacheKey:
        fuser = pipeline.fuser
        config = "|".join(
            [
                RESPONSE_SCHEMA,
                pipeline.encoder.model_id,
                str(fuser.k),
                ",".join(f"{k}={v}" for k, v in sorted(fuser.weights.items())),
                str(pipeline.config.candidates),
                str(request.top_k),
                str(request.offset),
            ]
        )
        return CacheKey.for_query(
            query,
            filters=filters_key(where),
            mode=request.mode,
            route=request.route or "",
            config_version=config,
        )

    def _note_lookup(self, tier: str, lookup: CacheLookup, t0: float) -> None:
        if self.metrics is not None:
            outcome = "hit" if lookup.hit is not None else "miss"
            self.metrics.cache_lookups.labels(tier, outcome).observe(time.perf_counter() - t0)
            if lookup.hit is not None:
                self.metrics.searches.labels(tier).inc()

    def _replay(self, lookup: CacheLookup, started: float, asked: str) -> bytes | None:
        hit = lookup.hit
        if hit is None:
            return None
        if not hit.payload.startswith(b'{"hits":'):
            logger.warning("dropping an unreadable cached reply")
            return None
        took = (time.perf_counter() - started) * 1000
        return splice(hit.payload, took_ms=took, query=asked, tier=hit.tier)

    async def search(
        self, pipeline: SearchPipeline, request: SearchRequest, query: str, where: SearchFilter
    ) -> bytes:
        """The JSON body of a `SearchResponse`: from the cache when allowed and possible, else
        searched and remembered.

        The engine searches the query in the exact tier's normal form (width, case, spacing and
        trailing punctuation folded), so two requests that share an exact-tier entry would also
        get the same answer uncached: an exact hit is right by construction.
        """
        started = time.perf_counter()
        asked, query = query, normalise_query(query) or query
        cache = self.cache if request.cache else None
        key = self._key(pipeline, request, query, where)
        lookup: CacheLookup | None = None
        if cache is not None:
            t0 = time.perf_counter()
            lookup = await cache.get_exact(key)
            self._note_lookup("exact", lookup, t0)
            if (reply := self._replay(lookup, started, asked)) is not None:
                return reply

        mode = SearchMode(request.mode)
        vector: Vectors | None = None
        degraded = False
        encode_ms = 0.0
        if mode is not SearchMode.SPARSE:
            t0 = time.perf_counter()
            vector = await pipeline.embed_or_degrade(query, mode)
            if vector is None:
                degraded, mode = True, SearchMode.SPARSE
            encode_ms = (time.perf_counter() - t0) * 1000

        entities = pipeline.sparse.tokenizer.entities(query)
        if cache is not None and vector is not None:
            t0 = time.perf_counter()
            lookup = await cache.get_semantic(key, vector, entities)
            self._note_lookup("semantic", lookup, t0)
            if (reply := self._replay(lookup, started, asked)) is not None:
                return reply

        outcome = await pipeline.search(
            query,
            top_k=request.top_k,
            offset=request.offset,
            mode=mode,
            where=where,
            query_vector=vector,
            route=request.route,
        )
        route = outcome.route
        weights = {**pipeline.fuser.weights, **(route.weights if route is not None else {})}
        timings = {"encode_ms": encode_ms, **outcome.timings_ms} if vector is not None else outcome.timings_ms
        shared = encode_shared(
            CachedReply(
                hits=build_hits(outcome, outcome.query_terms, pipeline.fuser.k, weights),
                route=route.to_json() if route is not None else None,
                degraded=degraded or outcome.degraded,
                mode=request.mode,
                top_k=request.top_k,
                offset=request.offset,
            )
        )
        took = (time.perf_counter() - started) * 1000
        if self.metrics is not None:
            self.metrics.observe_stages(timings)
            self.metrics.searches.labels("degraded" if degraded or outcome.degraded else "computed").inc()
        # A degraded answer (no dense half) must not be served later as if it were whole.
        if cache is not None and not degraded and not outcome.degraded and lookup is not None:
            self._remember(cache, key, vector, entities, shared, took, lookup.kb_version)
        return splice(
            shared, took_ms=took, query=asked, timings_ms={k: round(v, 3) for k, v in timings.items()}
        )

    def _remember(
        self,
        cache: Cache,
        key: CacheKey,
        vector: Vectors | None,
        entities: frozenset[str],
        payload: bytes,
        cost_ms: float,
        kb_version: int,
    ) -> None:
        # Stored off the request path: the caller does not wait for Redis.
        task = asyncio.create_task(cache.put(key, vector, entities, payload, cost_ms, kb_version=kb_version))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for pending cache writes (tests and shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
