"""`POST /v1/admin/cache/flush`: make every cached answer unservable, in every worker (admin key)."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK

from search_api.auth import admin_guard
from search_api.errors import ERROR_RESPONSES
from search_api.schemas import Body
from search_api.state import AppState


class CacheFlushResponse(Body):
    """Whether a cache is configured, and the `kb_version` cached answers must now carry."""

    enabled: bool
    kb_version: int | None = None


class AdminCacheController(Controller):
    """Cache administration."""

    path = "/v1/admin/cache"
    tags = ["admin"]
    guards = [admin_guard]

    @post(
        "/flush",
        operation_id="flushCache",
        status_code=HTTP_200_OK,
        summary="Flush the query cache",
        responses=ERROR_RESPONSES,
    )
    async def flush(self, serving: NamedDependency[AppState]) -> CacheFlushResponse:
        """Invalidate every cached answer by advancing `kb_version`, as an ingest does.

        Entries are not deleted one by one: no worker serves an entry of an older version, and
        TTL and LFU eviction reclaim the memory. If Redis is unreachable the bump is kept and
        applied when it returns; until then the cache is bypassed anyway.
        """
        cache = serving.require().cache
        if cache is None:
            return CacheFlushResponse(enabled=False)
        return CacheFlushResponse(enabled=True, kb_version=await cache.bump_version())
