"""The human search page: `GET /` and its assets under `/static/`, both outside the OpenAPI schema."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Controller, MediaType, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Everything the page needs comes from this origin; naming no other host keeps it working offline
# and means an injected tag could not load or send anything elsewhere.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def _index_html() -> bytes:
    """The page is static; read it once per process."""
    return (STATIC_DIR / "index.html").read_bytes()


class PageController(Controller):
    """`GET /`: the search page for people; the API itself lives under `/v1`."""

    path = "/"
    include_in_schema = False

    @get(
        "/",
        media_type=MediaType.HTML,
        include_in_schema=False,
        cache_control=CacheControlHeader(no_cache=True),
    )
    async def index(self) -> Response[bytes]:
        """The page; it reads `q`, `kind`, `mode` and `offset` from its URL and searches from the browser."""
        return Response(_index_html(), media_type=MediaType.HTML, headers=SECURITY_HEADERS)


async def _secure_asset(response: Response[object]) -> Response[object]:
    """Give every asset the page's headers, so a script or stylesheet opened directly is held the same."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def static_router() -> Router:
    """`/static/…`: the page's CSS, JS and icon. `no-cache` revalidates, so a deploy shows up at once."""
    return create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        include_in_schema=False,
        cache_control=CacheControlHeader(no_cache=True),
        after_request=_secure_asset,
        name="page_static",
    )
