"""The load tool: loopback only, bounded by time and count, cached vs uncached; then the real API."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eval.cli import main
from eval.latency import (
    LatencyConfig,
    NotLoopback,
    Sample,
    check_ready,
    load_query_texts,
    require_loopback,
    run_latency,
    summarise,
    write_latency,
)
from eval.server import free_port
from tests.api_process import ApiProcess
from tests.conftest import CMRC_DEV, seed_model

URL = "http://127.0.0.1:9"  # never contacted: the mock transport answers


@pytest.mark.unit
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:8000", "https://127.9.9.9"]
)
def test_loopback_urls_are_accepted(url: str) -> None:
    assert require_loopback(url) == url.rstrip("/")


@pytest.mark.unit
@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8000",
        "http://192.168.1.2",
        "http://example.com",
        "http://0.0.0.0:80",
        "ftp://127.0.0.1",
    ],
)
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(NotLoopback):
        require_loopback(url)


@pytest.mark.unit
def test_a_run_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="duration, a request count"):
        LatencyConfig(url=URL, concurrency=1, queries=("q",))
    assert LatencyConfig(url=URL, concurrency=1, queries=("q",), requests=5).time_limit_s > 0
    assert LatencyConfig(url=URL, concurrency=1, queries=("q",), mode="dense", requests=1).budget == 400.0


@pytest.mark.unit
def test_summary_splits_cached_and_uncached_and_judges_the_budget() -> None:
    samples = [Sample(float(ms), 200, True, cache_hit=False) for ms in range(100, 200)]
    samples += [Sample(1.0, 200, True, cache_hit=True, cache_tier="exact")] * 20
    samples += [Sample(5.0, 503, True, error="not ready")] * 2
    summary = summarise(samples, wall_s=2.0, budget_ms=195.0, max_error_rate=0.01)
    assert summary["latency_ms"]["cached"]["count"] == 20
    assert summary["latency_ms"]["uncached"]["count"] == 100
    assert summary["latency_ms"]["uncached"]["p50_ms"] == pytest.approx(149.5)
    assert summary["errors"] == 2 and summary["error_kinds"] == {"HTTP 503": 2}
    assert summary["qps"] == 60.0
    assert summary["within_budget"] and not summary["passed"]  # 2 of 122 requests failed: over 1%


def _mock(delay_s: float = 0.0, *, hit_every: int = 0) -> tuple[httpx.MockTransport, list[dict[str, object]]]:
    bodies: list[dict[str, object]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        await asyncio.sleep(delay_s)
        hit = bool(hit_every) and len(bodies) % hit_every == 0
        return httpx.Response(
            200, json={"hits": [], "took_ms": 1.5, "cache": {"hit": hit, "tier": "exact" if hit else None}}
        )

    return httpx.MockTransport(handler), bodies


@pytest.mark.unit
async def test_request_count_is_a_hard_bound() -> None:
    transport, bodies = _mock(hit_every=3)
    config = LatencyConfig(
        url=URL, concurrency=3, queries=("甲", "乙"), requests=7, cache="mixed", mode="sparse"
    )
    result = await run_latency(config, transport=transport)
    assert len(result.samples) == len(bodies) == 7
    assert [b["cache"] for b in bodies] == [True, False, True, False, True, False, True]
    assert {b["mode"] for b in bodies} == {"sparse"}
    assert {b["query"] for b in bodies} == {"甲", "乙"}
    assert result.summary["latency_ms"]["cached"]["count"] == 2
    assert result.passed and result.stopped_by == "requests"


@pytest.mark.unit
async def test_duration_is_a_hard_bound(tmp_path: Path) -> None:
    transport, _ = _mock(delay_s=0.02)
    config = LatencyConfig(url=URL, concurrency=2, queries=("甲",), duration_s=0.3)
    started = time.perf_counter()
    result = await run_latency(config, transport=transport)
    assert time.perf_counter() - started < 1.0
    assert result.stopped_by == "duration" and 4 <= len(result.samples) <= 40
    paths = write_latency(result, tmp_path)
    raw = json.loads(paths[1].read_text())
    assert len(raw["samples"]) == len(result.samples)
    assert json.loads(paths[0].read_text())["config"]["queries"] == 1


def _growing_server(start_mib: int, step_mib: int) -> httpx.MockTransport:
    """A server whose /metrics reports RSS growing by `step_mib` at every read."""
    reads = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        if request.url.path == "/metrics":
            rss = (start_mib + step_mib * reads) * 1024 * 1024
            reads += 1
            return httpx.Response(
                200,
                text=f"# TYPE process_resident_memory_bytes gauge\n"
                f"process_resident_memory_bytes {float(rss)}\n",
            )
        await asyncio.sleep(0.01)
        return httpx.Response(200, json={"hits": [], "took_ms": 1.0, "cache": {"hit": False}})

    return httpx.MockTransport(handler)


@pytest.mark.unit
@pytest.mark.parametrize(("step_mib", "passed"), [(0, True), (5, True), (50, False)])
async def test_server_memory_is_recorded_and_judged(step_mib: int, passed: bool, tmp_path: Path) -> None:
    config = LatencyConfig(url=URL, concurrency=2, queries=("甲",), duration_s=1.5, rss_source="metrics")
    result = await run_latency(config, transport=_growing_server(100, step_mib))
    rss = result.summary["server_rss"]
    assert rss["start"] == 100 * 1024 * 1024
    assert rss["readings"] >= 3  # start, at least one during the run, end
    assert rss["end"] == rss["max"] == (100 + step_mib * (rss["readings"] - 1)) * 1024 * 1024
    assert result.passed is passed and rss["within_limit"] is passed
    assert "server RSS start 100.0 MiB" in result.markdown()
    raw = json.loads(write_latency(result, tmp_path)[1].read_text())
    assert raw["server_rss_bytes"] == result.rss_bytes and len(raw["server_rss_bytes"]) == rss["readings"]


@pytest.mark.unit
async def test_server_memory_from_proc_of_a_pid() -> None:
    transport, _ = _mock()
    config = LatencyConfig(
        url=URL, concurrency=1, queries=("甲",), requests=3, rss_source=f"pid:{os.getpid()}"
    )
    result = await run_latency(config, transport=transport)
    assert result.summary["server_rss"]["start"] > 1024 * 1024
    with pytest.raises(ValueError, match="rss source"):
        LatencyConfig(url=URL, concurrency=1, queries=("甲",), requests=3, rss_source="pid:abc")


@pytest.mark.unit
def test_query_files_jsonl_and_plain(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "1", "text": "沈青崖是谁"}\n\n{"query": "玄霜城"}\n')
    (tmp_path / "q.txt").write_text("一\n\n二\n")
    assert load_query_texts(tmp_path / "q.jsonl") == ["沈青崖是谁", "玄霜城"]
    assert load_query_texts(tmp_path / "q.txt") == ["一", "二"]
    with pytest.raises(FileNotFoundError):
        load_query_texts(tmp_path / "missing.jsonl")


@pytest.mark.unit
def test_cli_refuses_remote_targets_and_missing_query_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["latency", "--url", "http://10.1.2.3:8000", "--requests", "1", "--queries", __file__]) == 2
    assert "loopback" in capsys.readouterr().err
    missing = str(tmp_path / "none.jsonl")
    assert main(["latency", "--url", "http://127.0.0.1:9", "--requests", "1", "--queries", missing]) == 2
    assert "not found" in capsys.readouterr().err


# -- against the real API ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_api(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Path]]:
    """The real API (real model, real Milvus Lite) as a subprocess on a free loopback port.

    A small knowledge base keeps start-up short. The model is the session's shared build
    (`built_model`).
    """
    root = tmp_path_factory.mktemp("live-api")
    data = root / "data"
    seed_model(data, request.getfixturevalue("built_model"))
    paragraphs = json.loads(CMRC_DEV.read_text(encoding="utf-8"))["data"][:12]
    docs: list[dict[str, str]] = []
    queries: list[dict[str, str]] = []
    for article in paragraphs:
        for p in article["paragraphs"]:
            docs.append({"id": p["id"], "title": article["title"], "kind": "lore", "text": p["context"]})
            queries.extend({"_id": qa["id"], "text": qa["question"]} for qa in p["qas"])
    kb = root / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs), encoding="utf-8")
    queries_path = root / "queries.jsonl"
    queries_path.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in queries), encoding="utf-8")

    # The routing head is beside the point here (and none ships for this knowledge base).
    env = {"SEARCH_DATA_FIXTURES": str(kb), "SEARCH_ROUTING_TRAIN_ON_START": "false"}
    api = ApiProcess(data, free_port(), root / "server.log", env=env)
    api.start()
    try:
        yield api.url, queries_path
    finally:
        api.stop()


# Per-request timeout for the runs against the real API: a busy machine may be slow, and only a
# request that never returns should count as an error here.
SLOW_MACHINE_TIMEOUT_S = 120.0


@pytest.mark.e2e
@pytest.mark.slow
def test_latency_run_against_the_real_api(live_api: tuple[str, Path], tmp_path: Path) -> None:
    # A plain test: the CLI runs its own event loop, as it does for a user.
    url, queries_path = live_api
    asyncio.run(check_ready(url))
    config = LatencyConfig(
        url=url,
        concurrency=4,
        queries=tuple(load_query_texts(queries_path)),
        requests=60,
        duration_s=120,
        warmup=2,
        timeout_s=SLOW_MACHINE_TIMEOUT_S,
    )
    result = asyncio.run(run_latency(config))
    assert len(result.samples) == 60 and result.stopped_by == "requests"
    assert result.summary["errors"] == 0, result.summary["error_kinds"]
    assert result.summary["latency_ms"]["all"]["count"] == 60
    assert result.summary["qps"] > 0
    assert all(s.server_took_ms is not None and s.server_took_ms <= s.latency_ms for s in result.samples)

    out = tmp_path / "load"
    args = [
        "latency",
        "--url",
        url,
        "--concurrency",
        "2",
        "--requests",
        "20",
        "--duration",
        "120",
        "--queries",
        str(queries_path),
        "--mode",
        "dense",
        "--cache",
        "mixed",
        "--out",
        str(out),
        "--rss",
        "metrics",
        # What is checked here is the run and its files, not this machine's speed.
        "--timeout",
        str(SLOW_MACHINE_TIMEOUT_S),
        "--budget-ms",
        "600000",
    ]
    assert main(args) == 0
    written = json.loads((out / "latency.json").read_text())
    assert written["server_rss"]["start"] > 10 * 1024 * 1024 and written["server_rss"]["readings"] >= 2
    assert (
        written["requests"] == 20
        and written["config"]["mode"] == "dense"
        and written["budget_ms"] == 600000.0
    )
    assert len(json.loads((out / "latency_raw.json").read_text())["samples"]) == 20
    # An impossible budget must fail the run (exit status 1), as CI would see it.
    assert main([*args[:-2], "--budget-ms", "0.001"]) == 1
