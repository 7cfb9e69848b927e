"""`POST /v1/search`."""

from __future__ import annotations

from litestar import Controller, MediaType, Response, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK

from retrieval.service import SearchQuery, UnknownFusion, check_fusion
from retrieval.types import SearchFilter, SearchMode
from search_api.auth import search_guard
from search_api.errors import ERROR_RESPONSES, ApiError
from search_api.reply import splice
from search_api.schemas import SearchRequest, SearchResponse
from search_api.settings import SearchLimits
from search_api.state import AppState


def search_query(data: SearchRequest, limits: SearchLimits) -> SearchQuery:
    """The engine's query for a request body, after the API's limits; raises `ApiError` (4xx)."""
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
    if data.fusion is not None:
        try:
            check_fusion(data.fusion)
        except UnknownFusion as exc:
            raise ApiError(str(exc), code=exc.code, field="fusion") from exc
    f = data.filters
    where = SearchFilter.build(f.kind, f.doc_id, f.metadata) if f is not None else SearchFilter()
    return SearchQuery(
        text=query,
        top_k=data.top_k,
        offset=data.offset,
        mode=SearchMode(data.mode),
        where=where,
        route=data.route,
        use_cache=data.cache,
        fusion=data.fusion,
    )


class SearchController(Controller):
    """Hybrid, dense or sparse search over the knowledge base."""

    path = "/v1/search"
    tags = ["search"]
    guards = [search_guard]

    @post(
        operation_id="search",
        status_code=HTTP_200_OK,
        summary="Search the knowledge base",
        responses=ERROR_RESPONSES,
    )
    async def search(
        self, data: SearchRequest, serving: NamedDependency[AppState]
    ) -> Response[SearchResponse]:
        """Fuse dense and BM25 retrieval; each hit explains its rank."""
        query = search_query(data, serving.settings.search)
        result = await serving.require().service.search(query)
        # The body is already JSON (a cache hit is spliced, never re-encoded); the annotation
        # still documents it as a SearchResponse.
        return Response(content=splice(result), media_type=MediaType.JSON)  # type: ignore[arg-type]
