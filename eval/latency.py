"""Closed-loop load against a running search API over HTTP: latency percentiles, QPS, errors.

`concurrency` workers each send one request, wait for the answer, and send the next, until the
time limit or the request count is reached, whichever comes first; both always apply, and a hard
deadline cancels whatever is still in flight. Only loopback addresses are accepted as targets.
Latency is measured by the client (what a caller waits), split by whether the answer came from
the cache (`cache.hit` in the response). With `rss_source` the server's resident memory is read
at the start, every second, and at the end (from `/metrics` or `/proc/<pid>/status`), and a run
whose memory grew more than `max_rss_growth` fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from eval.bench.stats import latency_summary
from eval.metrics import markdown_table

DEFAULT_BUDGET_MS: dict[str, float] = {"hybrid": 600.0, "sparse": 600.0, "dense": 400.0}
MAX_DURATION_S = 600.0
"""Ceiling on a run given only a request count."""
MAX_REQUESTS = 1_000_000
"""Ceiling on a run given only a duration."""
LATENCY_FILE = "latency.json"
RAW_FILE = "latency_raw.json"
RSS_INTERVAL_S = 1.0
_RSS_METRIC = "process_resident_memory_bytes"

CacheMode = Literal["on", "off", "mixed"]
SearchModeName = Literal["hybrid", "dense", "sparse"]


class NotLoopback(ValueError):
    """The target URL does not point at this machine's loopback interface."""


def require_loopback(url: str) -> str:
    """Return the URL without a trailing slash if it is http(s) on a loopback host; raise otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise NotLoopback(f"{url!r}: only http:// or https:// URLs are supported")
    host = parts.hostname or ""
    if host != "localhost":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise NotLoopback(f"{url!r}: host must be localhost or a loopback IP, not {host!r}") from None
        if not address.is_loopback:
            raise NotLoopback(f"{url!r}: {host} is not a loopback address; load is only sent to this machine")
    return url.rstrip("/")


def default_budget(mode: str) -> float:
    """The P95 budget in ms for a search mode (600 hybrid/sparse, 400 dense)."""
    return DEFAULT_BUDGET_MS[mode]


def load_query_texts(path: Path) -> list[str]:
    """Query strings from JSON Lines (`text` or `query` field, as BEIR/fixtures queries) or plain lines."""
    if not path.is_file():
        raise FileNotFoundError(f"query file {path} does not exist")
    texts: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix in {".jsonl", ".json"}:
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
            text = (obj.get("text") or obj.get("query")) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: no `text` or `query` string")
        else:
            text = line
        if text.strip():
            texts.append(text.strip())
    if not texts:
        raise ValueError(f"{path} holds no query")
    return texts


@dataclass(frozen=True)
class LatencyConfig:
    """One load run. At least one of `duration_s` and `requests` must be given."""

    url: str
    concurrency: int
    queries: tuple[str, ...]
    duration_s: float | None = None
    requests: int | None = None
    mode: SearchModeName = "hybrid"
    cache: CacheMode = "on"
    top_k: int = 10
    budget_ms: float | None = None
    timeout_s: float = 10.0
    warmup: int = 0
    max_error_rate: float = 0.01
    rss_source: str | None = None
    """Where to read the server's resident memory: None (not read), "metrics" (GET /metrics,
    `process_resident_memory_bytes`) or "pid:<n>" (/proc/<n>/status, this machine only)."""
    max_rss_growth: float = 0.10
    """Largest accepted growth of the server's RSS from start to end, as a fraction."""

    def __post_init__(self) -> None:
        require_loopback(self.url)
        if self.rss_source is not None and not (
            self.rss_source == "metrics"
            or (self.rss_source.startswith("pid:") and self.rss_source[4:].isdigit())
        ):
            raise ValueError("rss source must be 'metrics' or 'pid:<number>'")
        if self.max_rss_growth < 0:
            raise ValueError("max_rss_growth must not be negative")
        if self.duration_s is None and self.requests is None:
            raise ValueError("give a duration, a request count, or both")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be in (0, {MAX_DURATION_S:.0f}] seconds")
        if self.requests is not None and not 0 < self.requests <= MAX_REQUESTS:
            raise ValueError(f"requests must be in [1, {MAX_REQUESTS}]")
        if not 1 <= self.concurrency <= 256:
            raise ValueError("concurrency must be between 1 and 256")
        if self.mode not in DEFAULT_BUDGET_MS:
            raise ValueError(f"mode must be one of {sorted(DEFAULT_BUDGET_MS)}")
        if self.cache not in ("on", "off", "mixed"):
            raise ValueError("cache must be on, off or mixed")
        if not self.queries:
            raise ValueError("no queries to send")
        if self.timeout_s <= 0 or self.warmup < 0 or not 0 <= self.max_error_rate <= 1:
            raise ValueError("timeout must be > 0, warmup >= 0, max_error_rate within [0, 1]")

    @property
    def time_limit_s(self) -> float:
        """The duration that applies (the ceiling when only a count was given)."""
        return self.duration_s if self.duration_s is not None else MAX_DURATION_S

    @property
    def request_limit(self) -> int:
        """The request count that applies (the ceiling when only a duration was given)."""
        return self.requests if self.requests is not None else MAX_REQUESTS

    @property
    def budget(self) -> float:
        """P95 budget in ms (explicit or the mode's default)."""
        return self.budget_ms if self.budget_ms is not None else default_budget(self.mode)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the client saw it."""

    latency_ms: float
    status: int
    """HTTP status, or 0 when no response arrived (connection error, timeout)."""
    cache_requested: bool
    cache_hit: bool | None = None
    cache_tier: str | None = None
    server_took_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A 200 with a parseable body."""
        return self.error is None and self.status == 200


@dataclass
class LatencyResult:
    """Samples of one run and its summary."""

    config: LatencyConfig
    samples: list[Sample]
    wall_s: float
    stopped_by: str
    started_at: str
    rss_bytes: list[int] = field(default_factory=list)
    """The server's RSS, read at the start, every `RSS_INTERVAL_S` and at the end (empty: not read)."""
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.summary = summarise(self.samples, self.wall_s, self.config.budget, self.config.max_error_rate)
        if self.rss_bytes:
            rss = rss_summary(self.rss_bytes, self.config.max_rss_growth)
            self.summary["server_rss"] = rss
            self.summary["passed"] = self.summary["passed"] and rss["within_limit"]

    @property
    def passed(self) -> bool:
        """P95 within budget and error rate within its limit."""
        return bool(self.summary["passed"])

    def to_json(self) -> dict[str, Any]:
        """latency.json: configuration, provenance and summary (raw samples go to a separate file)."""
        config = asdict(self.config)
        config["queries"] = len(self.config.queries)
        return {
            "kind": "latency",
            "started_at": self.started_at,
            "config": config,
            "wall_s": round(self.wall_s, 3),
            "stopped_by": self.stopped_by,
            **self.summary,
        }

    def markdown(self) -> str:
        """A table of the overall, cached and uncached figures."""
        rows = []
        for name in ("all", "cached", "uncached"):
            s = self.summary["latency_ms"][name]
            rows.append(
                [
                    name,
                    s.get("count", 0),
                    s.get("p50_ms", float("nan")),
                    s.get("p95_ms", float("nan")),
                    s.get("p99_ms", float("nan")),
                ]
            )
        table = markdown_table(["answers", "count", "P50 ms", "P95 ms", "P99 ms"], rows)
        verdict = "PASS" if self.passed else "FAIL"
        memory = ""
        if (rss := self.summary.get("server_rss")) is not None:
            mib = 1024 * 1024
            memory = (
                f"server RSS start {rss['start'] / mib:.1f} MiB, end {rss['end'] / mib:.1f} MiB, "
                f"max {rss['max'] / mib:.1f} MiB ({rss['growth']:+.1%}; limit {rss['limit']:+.0%})\n"
            )
        return (
            f"{table}\nQPS {self.summary['qps']:.1f}, error rate {self.summary['error_rate']:.2%} "
            f"({self.summary['errors']} of {self.summary['requests']}), "
            f"P95 budget {self.config.budget:.0f} ms: {verdict}\n{memory}"
        )


def rss_summary(readings: Sequence[int], max_growth: float) -> dict[str, Any]:
    """Start, end and peak RSS in bytes, growth from start to end, and whether it is within limit."""
    start, end = readings[0], readings[-1]
    growth = (end - start) / start if start else 0.0
    return {
        "start": start,
        "end": end,
        "max": max(readings),
        "readings": len(readings),
        "growth": growth,
        "limit": max_growth,
        "within_limit": growth <= max_growth,
    }


async def read_rss(client: httpx.AsyncClient, source: str) -> int:
    """The server's resident memory in bytes, from `/metrics` or from `/proc/<pid>/status`."""
    if source.startswith("pid:"):
        proc = Path(f"/proc/{int(source[4:])}/status")
        status = await asyncio.to_thread(proc.read_text, encoding="ascii")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # reported in kB
        raise RuntimeError(f"no VmRSS in /proc/{source[4:]}/status")
    response = await client.get("/metrics")
    response.raise_for_status()
    for line in response.text.splitlines():
        if line.startswith(_RSS_METRIC + " "):
            return int(float(line.split()[1]))
    raise RuntimeError(f"{_RSS_METRIC} is not on {client.base_url}/metrics")


def summarise(
    samples: Sequence[Sample], wall_s: float, budget_ms: float, max_error_rate: float
) -> dict[str, Any]:
    """Percentiles over successful answers (all, cached, uncached), QPS, error rate, verdict."""
    ok = [s for s in samples if s.ok]
    errors = [s for s in samples if not s.ok]
    kinds: dict[str, int] = {}
    for s in errors:
        key = f"HTTP {s.status}" if s.status else (s.error or "error").split(":")[0]
        kinds[key] = kinds.get(key, 0) + 1
    all_ms = latency_summary([s.latency_ms for s in ok])
    p95 = all_ms.get("p95_ms")
    error_rate = len(errors) / len(samples) if samples else 1.0
    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": len(errors),
        "error_rate": error_rate,
        "error_kinds": kinds,
        "qps": len(ok) / wall_s if wall_s > 0 else 0.0,
        "latency_ms": {
            "all": all_ms,
            "cached": latency_summary([s.latency_ms for s in ok if s.cache_hit]),
            "uncached": latency_summary([s.latency_ms for s in ok if not s.cache_hit]),
        },
        "server_took_ms": latency_summary([s.server_took_ms for s in ok if s.server_took_ms is not None]),
        "budget_ms": budget_ms,
        "max_error_rate": max_error_rate,
        "within_budget": p95 is not None and p95 <= budget_ms,
        "passed": bool(ok) and p95 is not None and p95 <= budget_ms and error_rate <= max_error_rate,
    }


def _cache_flag(cache: CacheMode, index: int) -> bool:
    # "mixed" alternates, so both populations are measured under the same load.
    return cache == "on" or (cache == "mixed" and index % 2 == 0)


async def _one(client: httpx.AsyncClient, config: LatencyConfig, index: int) -> Sample:
    query = config.queries[index % len(config.queries)]
    use_cache = _cache_flag(config.cache, index)
    body = {"query": query, "top_k": config.top_k, "offset": 0, "mode": config.mode, "cache": use_cache}
    started = time.perf_counter()
    try:
        response = await client.post("/v1/search", json=body)
        elapsed = (time.perf_counter() - started) * 1000
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return Sample(elapsed, 0, use_cache, error=f"{type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return Sample(elapsed, response.status_code, use_cache, error=response.text[:200])
    try:
        data = response.json()
        cache = data.get("cache") or {}
        return Sample(
            elapsed,
            200,
            use_cache,
            cache_hit=bool(cache.get("hit")),
            cache_tier=cache.get("tier"),
            server_took_ms=float(data["took_ms"]) if "took_ms" in data else None,
        )
    except (ValueError, AttributeError) as exc:
        return Sample(elapsed, 200, use_cache, error=f"bad body: {exc}")


async def check_ready(
    url: str, wait_s: float = 0.0, *, transport: httpx.AsyncBaseTransport | None = None
) -> None:
    """Raise RuntimeError unless GET /v1/ready answers 200 (polling for up to `wait_s`)."""
    deadline = time.monotonic() + wait_s
    last = "no answer"
    async with httpx.AsyncClient(base_url=url, timeout=5.0, trust_env=False, transport=transport) as client:
        while True:
            try:
                response = await client.get("/v1/ready")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{url} is not ready ({last})")
            await asyncio.sleep(0.5)


async def run_latency(
    config: LatencyConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> LatencyResult:
    """Drive the API until the time or count limit; return every sample."""
    url = require_loopback(config.url)
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    samples: list[Sample] = []
    counter = 0
    stopped_by = "requests"
    # trust_env=False: a proxy from the environment must never carry this load off the machine.
    async with httpx.AsyncClient(
        base_url=url, timeout=config.timeout_s, limits=limits, trust_env=False, transport=transport
    ) as client:
        for i in range(config.warmup):
            await _one(client, config, i)

        source = config.rss_source
        rss = [await read_rss(client, source)] if source else []
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        started = time.perf_counter()
        deadline = started + config.time_limit_s

        async def watch_memory() -> None:
            assert source is not None  # only started with a source
            while True:
                await asyncio.sleep(RSS_INTERVAL_S)
                rss.append(await read_rss(client, source))

        async def worker() -> None:
            nonlocal counter, stopped_by
            while True:
                if time.perf_counter() >= deadline:
                    stopped_by = "duration"
                    return
                if counter >= config.request_limit:
                    return
                index = counter
                counter += 1
                samples.append(await _one(client, config, index))

        watcher = asyncio.create_task(watch_memory()) if source else None
        tasks = [asyncio.create_task(worker()) for _ in range(config.concurrency)]
        # Hard stop: requests in flight at the deadline get one timeout's grace, then are cancelled.
        _, pending = await asyncio.wait(tasks, timeout=config.time_limit_s + config.timeout_s + 1.0)
        for task in pending:
            task.cancel()
        if pending:
            stopped_by = "hard deadline"
            await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - started
        if watcher is not None and source is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            rss.append(await read_rss(client, source))
    return LatencyResult(config, samples, wall, stopped_by, started_at, rss)


def write_latency(result: LatencyResult, out: Path) -> list[Path]:
    """latency.json (summary) and latency_raw.json (one entry per request) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / LATENCY_FILE
    raw_path = out / RAW_FILE
    summary_path.write_text(
        json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    raw = {
        "fields": ["latency_ms", "status", "cache_requested", "cache_hit", "cache_tier", "server_took_ms"],
        "samples": [
            [round(s.latency_ms, 3), s.status, s.cache_requested, s.cache_hit, s.cache_tier, s.server_took_ms]
            for s in result.samples
        ],
        # One reading per RSS_INTERVAL_S: shows whether memory levels off or keeps climbing.
        "server_rss_bytes": result.rss_bytes,
    }
    raw_path.write_text(json.dumps(raw) + "\n", encoding="utf-8")
    return [summary_path, raw_path]
