"""`POST /v1/search`."""

from __future__ import annotations

from litestar import Controller, post
from litestar.status_codes import HTTP_200_OK

from retrieval.fusion import FusedHit
from retrieval.highlight import find_terms, mark
from retrieval.pipeline import SearchMode
from retrieval.store.filters import SearchFilter
from search_api.errors import ApiError
from search_api.schemas import (
    CacheInfo,
    Explanation,
    Highlight,
    Hit,
    SearchRequest,
    SearchResponse,
    SourceExplanation,
)
from search_api.state import EngineState


def _explain(hit: FusedHit, k: int, weights: dict[str, float]) -> Explanation:
    def source(name: str) -> SourceExplanation | None:
        ev = hit.sources.get(name)
        return SourceExplanation(rank=ev.rank, score=ev.score, contribution=ev.contribution) if ev else None

    return Explanation(
        dense=source("dense"), sparse=source("sparse"), fused_score=hit.score, rrf_k=k, weights=weights
    )


def _validate(data: SearchRequest, state: EngineState) -> tuple[str, SearchFilter]:
    limits = state.settings.search
    query = data.query.strip()
    if not query:
        raise ApiError("query must not be empty or whitespace", code="empty_query", field="query")
    if len(query) > limits.max_query_chars:
        raise ApiError(
            f"query is {len(query)} characters; the limit is {limits.max_query_chars}",
            code="query_too_long",
            field="query",
        )
    if not 1 <= data.top_k <= limits.max_top_k:
        raise ApiError(f"top_k must be between 1 and {limits.max_top_k}", code="invalid_top_k", field="top_k")
    if not 0 <= data.offset <= limits.max_offset:
        raise ApiError(
            f"offset must be between 0 and {limits.max_offset}", code="invalid_offset", field="offset"
        )
    if data.route not in (None, "none"):
        raise ApiError(
            'routing is not configured on this server; use null or "none"',
            code="unknown_route",
            field="route",
        )
    f = data.filters
    where = SearchFilter.build(f.kind, f.doc_id, f.metadata) if f is not None else SearchFilter()
    return query, where


class SearchController(Controller):
    """Hybrid, dense or sparse search over the knowledge base."""

    path = "/v1/search"
    tags = ["search"]

    @post(operation_id="search", status_code=HTTP_200_OK, summary="Search the knowledge base")
    async def search(self, data: SearchRequest, engine: EngineState) -> SearchResponse:
        """Fuse dense and BM25 retrieval with weighted RRF; each hit explains its rank."""
        query, where = _validate(data, engine)
        pipeline = engine.require()
        outcome = await pipeline.search(
            query, top_k=data.top_k, offset=data.offset, mode=SearchMode(data.mode), where=where
        )
        weights = dict(pipeline.fuser.weights)
        terms = pipeline.sparse.tokenizer.tokenize(query)
        hits = [
            Hit(
                id=h.hit.id,
                doc_id=h.hit.doc_id,
                title=h.hit.title,
                kind=h.hit.kind,
                text=h.hit.text,
                score=h.score,
                chunk_index=h.hit.chunk_index,
                metadata=h.hit.metadata,
                explanation=_explain(h, pipeline.fuser.k, weights),
                highlights=[Highlight(start=m.start, end=m.end, term=m.term) for m in marks],
                highlighted=mark(h.hit.text, marks),
            )
            for h in outcome.hits
            for marks in [find_terms(h.hit.text, terms)]
        ]
        return SearchResponse(
            hits=hits,
            took_ms=round(outcome.took_ms, 3),
            route=None,
            cache=CacheInfo(),
            degraded=outcome.degraded,
            query=query,
            mode=data.mode,
            top_k=data.top_k,
            offset=data.offset,
            timings_ms={k: round(v, 3) for k, v in outcome.timings_ms.items()},
        )
