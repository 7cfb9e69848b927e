"""The search page in headless Chromium, against `search-api serve` on the real fixtures and model."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from eval.server import free_port
from retrieval.encoders.build import BuiltModel
from retrieval.settings import PROJECT_ROOT
from tests.api_process import ApiProcess
from tests.conftest import seed_model

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]

# Debian's Chromium: Playwright's own download is not reachable from CI.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LATENCY = re.compile(r"^\d+(\.\d)? ms$")
SCREENSHOT = PROJECT_ROOT / "eval" / "out" / "screenshots" / "search-page.png"

# (query, judged grade-3 entry, its title): q031 by alias, and q093, a description that shares
# few words with its entry, so the dense side has to carry it.
ALIAS_QUERY = ("断剑客", "char-0001", "沈青崖")
DESCRIPTION_QUERY = ("每个月最后一天不许拔剑的门规", "lore-0024", "月晦不鸣剑")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Playwright]:
    """Playwright, once Chromium is known to be there; a missing browser is a failure, not a skip."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does this)"
        )
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def server(
    chromium: Playwright, built_model: BuiltModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """`search-api serve` on the fixtures, warmed so the page shows steady-state latency."""
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    seed_model(data_dir, built_model)
    srv = ApiProcess(data_dir, free_port(), data_dir.parent / "server.log")
    srv.start()
    # A query unlike the ones below: loads the collection without filling any cache for them.
    httpx.post(f"{srv.url}/v1/search", json={"query": "玄霜城在哪里"}, timeout=60).raise_for_status()
    yield srv
    srv.stop()


@pytest.fixture
def browser(chromium: Playwright) -> Iterator[BrowserContext]:
    """A fresh profile per test, so no state carries over."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = chromium.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            locale="zh-CN",
        )
        yield context
        context.close()


class PageWatch:
    """Console errors, uncaught exceptions and requests to other origins seen by one page."""

    def __init__(self, page: Page, origin: str):
        self.problems: list[str] = []
        page.on(
            "console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        page.on(
            "request",
            lambda r: None if r.url.startswith(origin) else self.problems.append(f"request: {r.url}"),
        )


def _wait_for_results(page: Page, query: str) -> None:
    # search.js marks which query is on screen and whether its answer has arrived.
    results = page.locator("#results")
    expect(results).to_have_attribute("data-query", query, timeout=30_000)
    expect(results).to_have_attribute("data-state", "done", timeout=30_000)


def _search(page: Page, query: str) -> None:
    box = page.locator("#q")
    box.fill("")
    box.press_sequentially(query, delay=20)
    box.press("Enter")
    _wait_for_results(page, query)


def _expect_first(page: Page, doc_id: str, title: str) -> None:
    first = page.locator("#results .hit").first
    expect(first).to_have_attribute("data-doc-id", doc_id)
    expect(first.locator(".hit-title")).to_have_text(title)
    expect(first.locator(".hit-rank")).to_have_text("1")


def test_typed_queries_show_their_judged_entries_first(
    server: ApiProcess, browser: BrowserContext, tmp_path: Path
) -> None:
    page = browser.new_page()
    watch = PageWatch(page, server.url)
    page.goto(f"{server.url}/")
    expect(page.locator("#engine")).to_have_attribute("data-state", "ready")
    expect(page.locator("#welcome")).to_be_visible()

    query, doc_id, title = ALIAS_QUERY
    _search(page, query)
    _expect_first(page, doc_id, title)
    first = page.locator("#results .hit").first
    # The alias is marked in the snippet, and the hit explains its rank from both retrievers.
    expect(first.locator(".hit-text em").first).to_be_visible()
    expect(first.locator(".kind-badge")).to_have_text("人物")
    expect(first.locator(".explain")).to_be_visible()
    expect(first.locator(".explain-dense dd")).to_contain_text("#")
    expect(first.locator(".explain-sparse dd")).to_contain_text("#1")
    # RRF scores are below 1; the learned ranker's are any real number, with its features beside.
    expect(first.locator(".fused-value")).to_have_text(re.compile(r"^-?\d+\.\d{4}$"))
    # Latency as the server measured it and as the browser did.
    expect(page.locator("#stats")).to_be_visible()
    expect(page.locator("#took-server")).to_have_text(LATENCY)
    expect(page.locator("#took-roundtrip")).to_have_text(LATENCY)
    expect(page.locator("#stat-cache")).to_contain_text("缓存")
    # The search is in the URL, so it can be linked.
    assert parse_qs(urlsplit(page.url).query)["q"] == [query]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    shutil.copy(SCREENSHOT, tmp_path / SCREENSHOT.name)

    query, doc_id, title = DESCRIPTION_QUERY
    _search(page, query)
    _expect_first(page, doc_id, title)
    expect(page.locator("#results .hit").first.locator(".explain-dense dd")).to_contain_text("#1")
    assert watch.problems == []


def test_filters_paging_links_and_errors(server: ApiProcess, browser: BrowserContext) -> None:
    page = browser.new_page()
    watch = PageWatch(page, server.url)
    query = DESCRIPTION_QUERY[0]
    # Opening a link runs its search.
    page.goto(f"{server.url}/?q={query}")
    _wait_for_results(page, query)
    _expect_first(page, *DESCRIPTION_QUERY[1:])

    page.locator("#kinds label.kind-lore").click()
    _wait_for_results(page, query)
    badges = page.locator("#results .hit .kind-badge").all_text_contents()
    assert len(badges) == 10 and set(badges) == {"设定"}
    assert parse_qs(urlsplit(page.url).query)["kind"] == ["lore"]

    expect(page.locator("#prev")).to_be_disabled()
    page.locator("#next").click()
    expect(page.locator("#results .hit .hit-rank").first).to_have_text("11")
    assert parse_qs(urlsplit(page.url).query)["offset"] == ["10"]
    page.locator("#prev").click()
    expect(page.locator("#results .hit .hit-rank").first).to_have_text("1")

    page.locator('.segmented label:has(input[value="sparse"])').click()
    expect(page.locator("#stat-range")).to_contain_text("关键词")
    expect(page.locator("#results .hit").first.locator(".explain-dense dd")).to_have_text("未召回")
    assert watch.problems == []

    # The server's message, readable, instead of a blank page.
    page.goto(f"{server.url}/?q={'剑' * 600}")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-message")).to_contain_text("512")
    expect(page.locator("#results .hit")).to_have_count(0)
    # Chromium logs the 400 itself; anything else would be the page's own fault.
    assert [p for p in watch.problems if "status of 400" not in p] == []
