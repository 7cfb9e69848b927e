"""The served query path, in process: what `/v1/search`, `search-eval` and the benchmarks all run.

    understand -> exact cache -> canonical cache -> encode once -> semantic cache -> route
    -> retrieve -> fuse -> rank -> page -> store

The query vector is computed once and serves the semantic cache, the router and dense retrieval.
An encoder failure degrades a hybrid search to BM25 alone (`degraded`), here and nowhere else.
The answer is kept as JSON bytes (`retrieval.answer`); a cache hit returns the stored bytes as
they are, and only a caller that wants the typed answer decodes them.

Fusion is "learned" (the LambdaRank stage of `retrieval.ranking` orders the union of both
retrievers' candidates, RRF's score being one of its features) or "rrf" (weighted RRF alone).
Without a ranker for the served encoder, "learned" answers with RRF and every hit says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from retrieval.answer import ANSWER_SCHEMA, Answer, build_hits, decode_answer, encode_answer
from retrieval.cache.canonical import canonical_form
from retrieval.cache.protocol import (
    Cache,
    CacheKey,
    CacheLookup,
    Evidence,
    Tier,
    filters_key,
    normalise_query,
)
from retrieval.errors import EncoderRejected, EncoderUnavailable, InvalidRequest, UnknownIntent
from retrieval.fusion import WeightedRRF
from retrieval.knowledge_base import KnowledgeBase, Retrieved
from retrieval.ranking.features import RankingInput
from retrieval.ranking.ranker import LearnedRanker
from retrieval.routing.router import ROUTE_OFF, Route, Router
from retrieval.text import question_form
from retrieval.types import FusedHit, SearchFilter, SearchMode, StoredHit, Vectors
from retrieval.understanding.understander import QueryUnderstanding, Understood

logger = logging.getLogger(__name__)

FUSIONS = ("learned", "rrf")
"""How candidates are ordered: the learned ranker (when one is loaded) or weighted RRF."""


class UnknownFusion(InvalidRequest):
    """A fusion method other than `FUSIONS`."""

    code = "invalid_fusion"

    def __init__(self, value: str):
        super().__init__(f"fusion must be one of {', '.join(FUSIONS)}, not {value!r}", field="fusion")


def check_fusion(value: str) -> str:
    """`value` if it names a fusion method; else `UnknownFusion` (a 400 with a stable code)."""
    if value not in FUSIONS:
        raise UnknownFusion(value)
    return value


@dataclass(frozen=True)
class SearchQuery:
    """One search as a caller asks for it."""

    text: str
    top_k: int = 10
    offset: int = 0
    mode: SearchMode = SearchMode.HYBRID
    where: SearchFilter = field(default_factory=SearchFilter)
    route: str | None = None
    """None: the intent classifier chooses; "none": routing off; an intent name: that route."""
    use_cache: bool = True
    fusion: str | None = None
    """None: the service's configured method; else "learned" or "rrf"."""


@dataclass(frozen=True)
class SearchResult:
    """A search's answer as JSON bytes, where it came from, and what it cost."""

    payload: bytes
    """The `Answer` as JSON (`retrieval.answer.encode_answer`)."""
    query: str
    """The query as asked (before normalisation)."""
    tier: Tier | None
    """The cache tier that served it; None when it was computed."""
    took_ms: float
    timings_ms: dict[str, float]
    computed: Answer | None = field(default=None, repr=False)

    @property
    def answer(self) -> Answer:
        """The typed answer (decoded from `payload` when it came from the cache)."""
        return self.computed if self.computed is not None else decode_answer(self.payload)


class SearchObserver(Protocol):
    """Where the service reports what it did (the API's Prometheus metrics)."""

    def cache_lookup(self, tier: Tier, hit: bool, seconds: float) -> None:
        """One cache lookup and its outcome."""
        ...

    def answered(self, how: str, timings_ms: Mapping[str, float]) -> None:
        """One answer: how ("exact", "semantic", "computed", "degraded") and its stage timings."""
        ...


@dataclass
class SearchService:
    """Answers queries over a knowledge base, through the cache, the router and fusion."""

    kb: KnowledgeBase
    fuser: WeightedRRF
    candidates: int = 100
    """Depth of each retriever's list before fusion (a route may ask for another)."""
    rank_depth: int = 0
    """How many of the fused candidates, in RRF order, the learned stage scores (0: all)."""
    router: Router | None = None
    cache: Cache | None = None
    observer: SearchObserver | None = None
    understanding: QueryUnderstanding | None = None
    fusion: str = "rrf"
    """The configured method (a request may choose the other)."""
    ranker: LearnedRanker | None = None
    """The learned ranker for the served encoder; None: "learned" answers with RRF."""
    _background: set[asyncio.Task[object]] = field(default_factory=set, repr=False)

    # -- the query path ---------------------------------------------------------------------
    async def search(self, query: SearchQuery) -> SearchResult:
        """The answer to `query`: from the cache when allowed and possible, else searched and kept.

        The engine searches the query as `search_text` gives it (width, case, spacing, trailing
        punctuation, wrappers, final particles and question words folded) and keys the exact tier
        by that text, so two requests that share an exact-tier entry would also get the same
        answer uncached: an exact hit is right by construction. A canonical or
        semantic hit serves another wording's answer; `search-eval bench cache_http` measures how
        often that answer is worse than the query's own.
        """
        started = time.perf_counter()
        asked, typed = query.text, self.search_text(query.text)
        self._check_route(query)
        check_fusion(query.fusion or self.fusion)
        # The search runs on the understood text (names read right); the cache key keeps the typed
        # form and what was corrected, so each spelling gets an answer that says what it corrected.
        understood = self.understanding.understand(typed) if self.understanding is not None else None
        text = understood.text if understood is not None else typed
        cache = self.cache if query.use_cache else None
        key = self._key(query, typed, understood)
        lookup: CacheLookup | None = None
        if cache is not None:
            t0 = time.perf_counter()
            lookup = await cache.get_exact(key)
            if (hit := self._served(lookup, "exact", t0, started, asked)) is not None:
                return hit

        entities = self.kb.sparse.tokenizer.entities(text)  # folded: traditional script names them too
        if cache is not None:
            t0 = time.perf_counter()
            key = replace(key, canonical=canonical_form(text, entities, self.kb.sparse.tokenizer.words))
            lookup = await cache.get_canonical(key)
            if (hit := self._served(lookup, "canonical", t0, started, asked)) is not None:
                return hit

        mode = query.mode
        vector: Vectors | None = None
        timings: dict[str, float] = {}
        if mode is not SearchMode.SPARSE:
            t0 = time.perf_counter()
            vector = await self._embed_or_degrade(text, mode)
            timings["encode_ms"] = (time.perf_counter() - t0) * 1000
        degraded = mode is not SearchMode.SPARSE and vector is None

        if cache is not None and vector is not None:
            t0 = time.perf_counter()

            async def evidence(depth: int) -> Evidence:
                return await self.sparse_evidence(query, text, depth)

            lookup = await cache.get_semantic(key, vector, entities, evidence=evidence)
            if (hit := self._served(lookup, "semantic", t0, started, asked)) is not None:
                return hit

        answer = await self._compute(query, text, vector, degraded, timings, understood)
        if understood is not None and understood.corrected:
            answer.corrected = dict(understood.corrected)
        payload = encode_answer(answer)
        took = (time.perf_counter() - started) * 1000
        if self.observer is not None:
            self.observer.answered("degraded" if answer.degraded else "computed", timings)
        # A degraded answer (no dense half) must not be served later as if it were whole.
        if cache is not None and not answer.degraded and lookup is not None:
            top_docs = [hit.doc_id for hit in answer.hits]
            self._remember(cache, key, vector, entities, payload, took, lookup.kb_version, top_docs)
        rounded = {k: round(v, 3) for k, v in timings.items()}
        return SearchResult(payload, asked, None, took, rounded, computed=answer)

    async def _compute(
        self,
        query: SearchQuery,
        text: str,
        vector: Vectors | None,
        degraded: bool,
        timings: dict[str, float],
        understood: Understood | None = None,
    ) -> Answer:
        mode, where = query.mode, query.where
        if degraded:
            mode = SearchMode.SPARSE
        weights: Mapping[str, float] | None = None
        candidates = self.candidates
        route: Route | None = None
        if self._routes(query):
            assert self.router is not None  # _routes checked it; narrows the type
            route = self.router.route(vector[0] if vector is not None else None, text, force=query.route)
            if route.out_of_scope:
                return self._answer(query, [], [], route, degraded)
            mode, where = route.mode, route.search_filter(where)
            weights, candidates = route.weights, route.candidates or candidates
            if mode is SearchMode.DENSE and vector is None:
                mode = SearchMode.SPARSE  # the encoder is down: BM25 is all there is
        depth = max(candidates, query.offset + query.top_k)
        terms = self.kb.sparse.tokenizer.tokenize(text)  # once: BM25 here, highlights in the answer
        retrieved = await self._retrieve(understood, terms, vector, mode, depth, where, timings)
        fused = self.fuser.fuse(retrieved.ranked, weights)
        start, stop = query.offset, query.offset + query.top_k
        # The ranker orders the two retrievers' union; a dense or sparse search keeps its own order.
        if self._learned(query) and mode is SearchMode.HYBRID:
            assert self.ranker is not None  # _learned checked it
            t0 = time.perf_counter()
            pool = fused[: self.rank_depth] if self.rank_depth else fused
            ranked = self.ranker.rank(self.ranking_input(text, terms, depth), pool, retrieved.ranked)
            # Kind boosts are in RRF units and the ranker's scores are not: the model decides alone.
            page = self.ranker.explain(ranked, start, stop)
            timings["rank_ms"] = (time.perf_counter() - t0) * 1000
            return self._answer(query, page, terms, route, degraded, fusion="learned")
        if route is not None:
            fused = route.rescore(fused)  # boosts re-order the whole list, so paging comes after
        return self._answer(query, fused[start:stop], terms, route, degraded)

    async def candidate_lists(self, text: str) -> tuple[RankingInput, dict[str, list[StoredHit]]]:
        """An unrouted hybrid search's ranking input and candidate lists, as `search` computes them.

        What the ranker's training records per query (`retrieval.training.ranking`), so it learns
        from exactly the evidence it is served.
        """
        text = self.search_text(text)
        understood = self.understanding.understand(text) if self.understanding is not None else None
        if understood is not None:
            text = understood.text
        vector = await self.kb.encoder.encode_queries([text])
        terms = self.kb.sparse.tokenizer.tokenize(text)
        retrieved = await self._retrieve(
            understood, terms, vector, SearchMode.HYBRID, self.candidates, SearchFilter(), {}
        )
        return self.ranking_input(text, terms, self.candidates), retrieved.ranked

    async def _retrieve(
        self,
        understood: Understood | None,
        terms: list[str],
        vector: Vectors | None,
        mode: SearchMode,
        depth: int,
        where: SearchFilter,
        timings: dict[str, float],
    ) -> Retrieved:
        """Dense and sparse lists, and for an entity question in hybrid mode the `entity` source.

        The entity query needs neither list, so it runs beside them. Both are awaited to the end
        (each has its store deadline) before the first failure is raised as itself, so no query
        is left running and the store's errors keep their meaning (503 store_unavailable, ...).
        """
        retrieval = self.kb.retrieve(terms, vector, mode=mode, depth=depth, where=where)
        if mode is not SearchMode.HYBRID or understood is None or understood.question is None:
            retrieved = await retrieval
        else:
            lists, entity = await asyncio.gather(
                retrieval, self._entity_hits(understood, depth, where, timings), return_exceptions=True
            )
            if isinstance(lists, BaseException):
                raise lists
            if isinstance(entity, BaseException):
                raise entity
            retrieved = lists
            retrieved.ranked["entity"] = entity
        timings.update(retrieved.timings_ms)
        return retrieved

    def search_text(self, text: str) -> str:
        """The one text a query is searched as (and keyed by in the exact tier).

        Its folded normal form without wrappers, final particles or spaces inside Chinese
        (`normalise_query`), question words written one way (`question_form`): wordings that ask
        the same thing get the same answer, cached or not.
        """
        plain = normalise_query(text) or text
        return question_form(plain, self.kb.sparse.tokenizer.words) or plain

    def ranking_input(self, text: str, terms: list[str], depth: int) -> RankingInput:
        """What the ranker is told about a query: its terms with their live BM25 IDF."""
        stats = self.kb.stats
        idf_by_id = stats.idf()
        idf = {t: idf_by_id.get(stats.vocab[t], 0.0) for t in set(terms) if t in stats.vocab}
        return RankingInput(text=text, terms=terms, idf=idf, depth=depth)

    def effective_fusion(self, query: SearchQuery) -> str:
        """The method that orders this query's hits ("learned" needs a loaded ranker)."""
        return "learned" if self._learned(query) else "rrf"

    def _learned(self, query: SearchQuery) -> bool:
        return (query.fusion or self.fusion) == "learned" and self.ranker is not None

    async def _entity_hits(
        self, understood: Understood, depth: int, where: SearchFilter, timings: dict[str, float]
    ) -> list[StoredHit]:
        """The entries a relation question asks about, then those they name: one store query.

        Scored 1 for an asked entry, else its mention's closeness to what is asked (0..1).
        """
        question = understood.question
        assert question is not None  # the caller checked
        t0 = time.perf_counter()
        found = await self.kb.store.titled(question.titles, depth, where)
        timings["entity_ms"] = (time.perf_counter() - t0) * 1000
        place = {title: i for i, title in enumerate(question.titles)}
        score = dict.fromkeys(question.asked, 1.0) | dict(
            zip(question.named, question.closeness, strict=True)
        )
        found.sort(key=lambda h: (place.get(h.title, len(place)), h.chunk_index, h.id))
        return [dataclasses.replace(h, score=score.get(h.title, 0.0)) for h in found]

    def _answer(
        self,
        query: SearchQuery,
        page: list[FusedHit],
        terms: list[str],
        route: Route | None,
        degraded: bool,
        fusion: str = "rrf",
    ) -> Answer:
        weights = {**self.fuser.weights, **(route.weights if route is not None else {})}
        return Answer(
            hits=build_hits(page, terms, rrf_k=self.fuser.k, weights=weights, fusion=fusion),
            route=route.to_json() if route is not None else None,
            degraded=degraded,
            mode=query.mode.value,
            top_k=query.top_k,
            offset=query.offset,
        )

    def _routes(self, query: SearchQuery) -> bool:
        return self.router is not None and query.mode is SearchMode.HYBRID and query.route != ROUTE_OFF

    def _check_route(self, query: SearchQuery) -> None:
        # Before any cache lookup: an impossible route is the same error whether cached or not.
        if query.route not in (None, ROUTE_OFF) and not self._routes(query):
            raise UnknownIntent(
                f"route {query.route!r} needs routing (a hybrid search on a server with a router)"
            )

    async def _embed_or_degrade(self, text: str, mode: SearchMode) -> Vectors | None:
        """The query vector; None when the encoder fails and BM25 can answer alone.

        A dense-only search has no fallback, so there the failure propagates.
        """
        try:
            return await self.kb.encoder.encode_queries([text])
        except (EncoderUnavailable, EncoderRejected) as exc:
            if mode is SearchMode.DENSE:
                raise
            logger.warning("encoder failed, answering from sparse retrieval only: %s", exc)
            return None

    # -- the cache ---------------------------------------------------------------------------
    async def sparse_evidence(self, query: SearchQuery, text: str, depth: int) -> Evidence:
        """The query's BM25 top `depth` document ids: what a verified semantic hit is checked with."""
        terms = self.kb.sparse.tokenizer.tokenize(text)
        if not terms:
            return []
        retrieved = await self.kb.retrieve(
            terms, None, mode=SearchMode.SPARSE, depth=depth, where=query.where
        )
        return [hit.doc_id for hit in retrieved.ranked.get("sparse", [])]

    def _key(self, query: SearchQuery, text: str, understood: Understood | None) -> CacheKey:
        fuser = self.fuser
        understanding = "" if self.understanding is None else self.understanding.fingerprint()
        if understood is not None and understood.corrected:
            # In the partition: a semantic hit must have made the same corrections to be served.
            understanding += "|" + ",".join(f"{k}>{v}" for k, v in sorted(understood.corrected.items()))
        config = "|".join(
            [
                ANSWER_SCHEMA,
                self.kb.encoder.model_id,
                str(fuser.k),
                ",".join(f"{k}={v}" for k, v in sorted(fuser.weights.items())),
                str(self.candidates),
                self._ranker_key(query),
                str(query.top_k),
                str(query.offset),
                understanding,
            ]
        )
        # `text` is `search_text`'s output, already in normal form: no second normalisation.
        return CacheKey(
            text,
            filters=filters_key(query.where),
            mode=query.mode.value,
            route=query.route or "",
            config_version=config,
        )

    def _ranker_key(self, query: SearchQuery) -> str:
        # The method that may order the hits, and the exact model when it is the ranker.
        if self._learned(query) and query.mode is SearchMode.HYBRID:
            assert self.ranker is not None
            return f"learned:{self.ranker.digest}:{self.rank_depth}"
        return "rrf"

    def _served(
        self, lookup: CacheLookup, tier: Tier, t0: float, started: float, asked: str
    ) -> SearchResult | None:
        hit = lookup.hit
        if self.observer is not None:
            self.observer.cache_lookup(tier, hit is not None, time.perf_counter() - t0)
        if hit is None:
            return None
        if not hit.payload.startswith(b'{"hits":'):
            logger.warning("dropping an unreadable cached answer")
            return None
        if self.observer is not None:
            self.observer.answered(hit.tier, {})
        return SearchResult(hit.payload, asked, hit.tier, (time.perf_counter() - started) * 1000, {})

    def _remember(
        self,
        cache: Cache,
        key: CacheKey,
        vector: Vectors | None,
        entities: frozenset[str],
        payload: bytes,
        cost_ms: float,
        kb_version: int,
        evidence: Evidence,
    ) -> None:
        # Stored off the request path: the caller does not wait for Redis.
        task = asyncio.create_task(
            cache.put(key, vector, entities, payload, cost_ms, kb_version=kb_version, evidence=evidence)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for pending cache writes (tests and shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
