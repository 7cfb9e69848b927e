"""The search page: served at `/`, self-contained, locked to its own origin, absent from the schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

STATIC_DIR = Path(__file__).resolve().parents[2] / "search_api" / "static"

ASSETS = {
    "/static/search.css": "text/css",
    "/static/search.js": "javascript",
    "/static/favicon.svg": "image/svg+xml",
}

# Any absolute or protocol-relative URL: the page must not name another host, so it works offline.
EXTERNAL_URL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}|https?://""", re.IGNORECASE)
# SVG's own namespace URI is an identifier, never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.mark.integration  # the `client` fixture serves a tiny KB from real Milvus Lite
async def test_root_serves_the_page_and_its_assets(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="zh-CN">' in html
    assert 'id="q"' in html and "搜索" in html
    for asset, content_type in ASSETS.items():
        assert asset.lstrip("/") in html  # linked relative, so the page also works under a path prefix
        loaded = await client.get(asset)
        assert loaded.status_code == 200, asset
        assert content_type in loaded.headers["content-type"], asset
        assert loaded.content, asset
    assert (await client.get("/static/nope.js")).status_code == 404


@pytest.mark.integration
async def test_nothing_is_loaded_from_another_host(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    for path in ("/", *ASSETS):
        text = (await client.get(path)).text.replace(SVG_NAMESPACE, "")
        assert EXTERNAL_URL.findall(text) == [], path


@pytest.mark.integration
async def test_content_security_policy_forbids_other_hosts(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    for path in ("/", "/static/search.js"):
        headers = (await client.get(path)).headers
        policy = {
            name: values
            for directive in headers["content-security-policy"].split(";")
            for name, *values in [directive.split()]
        }
        assert policy["default-src"] == ["'none'"]
        for directive in ("script-src", "style-src", "connect-src"):
            assert policy[directive] == ["'self'"], directive
        assert policy["frame-ancestors"] == ["'none'"]
        assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.unit
def test_the_page_inserts_html_only_from_the_highlighted_field() -> None:
    # Titles, ids and metadata are user data; only `highlighted` is escaped by the server.
    script = (STATIC_DIR / "search.js").read_text(encoding="utf-8")
    assert re.findall(r"\.innerHTML\s*=\s*([^;]+);", script) == ["hit.highlighted"]
    assert "insertAdjacentHTML" not in script and "outerHTML" not in script and "eval(" not in script


@pytest.mark.integration
async def test_the_search_it_sends_is_answered_with_highlights(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    # The body the page builds for `/?q=断剑客&kind=character`.
    body = {"query": "断剑客", "top_k": 10, "offset": 0, "mode": "hybrid", "filters": {"kind": "character"}}
    hits = (await client.post("/v1/search", json=body)).json()["hits"]
    assert hits[0]["doc_id"] == "char-1"
    assert "<em>断剑客</em>" in hits[0]["highlighted"]


@pytest.mark.integration
async def test_page_routes_stay_out_of_the_api_schema(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/static")]
    assert "/v1/search" in paths
