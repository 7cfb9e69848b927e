"""Cache-hit latency over HTTP with a compiled client: what a hit costs the server, not the benchmark.

    uv run search-eval bench cache_wrk [--stream 2000] [--seed 2] [--runs 5] [--duration 10]

`cache_http` times each request with Python's httpx on the same two cores as the server, so its
hit latency includes the client's own milliseconds. Here the same stream
(`eval.bench.cache_stream`, same seed) is first replayed once with httpx against `search-api serve`
with the cache in the real Redis, recording which texts were served from the cache; then `wrk`
(one connection, one thread) sends only those texts, in turn, for `--duration` seconds per run.
Hits never write to the cache, so every wrk request is a hit of the same tier as in the replay;
the server's own counters (`/v1/ready` cache metrics) are read before and after each run, and
each run is reported with its hits and the requests that were not hits: a miss is seen, not
averaged in.

Reports P50/P95 per run and their medians, by default over the hits of every tier together (the
`cache_http` figure), and with `--tier exact|canonical|semantic` over one tier's texts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import redis

from eval.bench.cache_stream import build_stream
from eval.bench.cpu_per_request import DONE_HOOK, LUA_TEMPLATE, fresh_data_dir, wrk_p95
from eval.bench.results import write_result
from eval.server import server_process, wait_ready
from retrieval.settings import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "eval" / "reports" / "cache" / "hits-wrk.json"


def hits_script(texts: Sequence[str]) -> str:
    """The wrk script: one cached search per text (cache on), sent in turn, P95 printed at the end."""
    bodies = ["[[" + json.dumps({"query": t, "top_k": 10}) + "]]" for t in texts]
    return LUA_TEMPLATE.replace("{BODIES}", "{\n  " + ",\n  ".join(bodies) + "\n}") + DONE_HOOK


def _counters(url: str) -> dict[str, int]:
    """The cache's hit counters per tier, from `/v1/ready`."""
    metrics = httpx.get(f"{url}/v1/ready", trust_env=False).json()["cache"]["metrics"]
    return {tier: int(metrics[f"{tier}_hits"]) for tier in ("exact", "canonical", "semantic")}


async def _fill(url: str, texts: Sequence[str]) -> dict[str, list[str]]:
    """Replay the stream once, cache on; the texts served from the cache, by tier."""
    served: dict[str, list[str]] = {"exact": [], "canonical": [], "semantic": []}
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        for text in texts:
            body = (await client.post("/v1/search", json={"query": text, "top_k": 10})).json()
            if body["cache"]["hit"]:
                served[body["cache"]["tier"]].append(text)
            else:
                await asyncio.sleep(0.002)  # let the off-path cache write land, as in cache_http
    return served


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the cache with one replay, then time hits with wrk; print and write the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stream", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--tier", choices=("all", "exact", "canonical", "semantic"), default="all")
    parser.add_argument("--models", type=Path, default=PROJECT_ROOT / "data" / "models")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install the Debian package `wrk`")

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench:cache-wrk:{uuid.uuid4().hex[:8]}:"
    stream = [item.text for item in build_stream(args.stream, seed=args.seed)]
    data_dir = fresh_data_dir(args.models, Path(tempfile.mkdtemp(prefix="cache-wrk-")))
    env = {"REDIS_URL": redis_url, "SEARCH_CACHE_KEY_PREFIX": prefix}
    runs: list[dict[str, Any]] = []
    try:
        with server_process(data_dir, env, log=data_dir / "server.log") as (url, proc):
            asyncio.run(wait_ready(url, proc, 300))
            served = asyncio.run(_fill(url, stream))
            texts = [t for tier, ts in served.items() if args.tier in ("all", tier) for t in ts]
            if not texts:
                raise SystemExit(f"no {args.tier} hits in the replay")
            script = data_dir / "hits.lua"
            script.write_text(hits_script(texts), encoding="utf-8")
            print(
                f"replay: {sum(map(len, served.values()))} hits { ({k: len(v) for k, v in served.items()}) }"
            )
            wrk_p95(script, url, 1, 2)  # warm-up
            for run in range(args.runs):
                before = _counters(url)
                figures = wrk_p95(script, url, 1, args.duration)
                after = _counters(url)
                # wrk's count includes requests still in flight when it stopped; at one connection
                # that is at most one, so more computed answers than that were real misses.
                figures["hits"] = {k: after[k] - before[k] for k in after}
                figures["misses"] = max(0, figures["requests"] - sum(figures["hits"].values()) - 1)
                figures["load_average_1m"] = round(os.getloadavg()[0], 2)
                runs.append(figures)
                print(f"  run {run + 1}: {figures}", flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()

    summary = {
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p95_ms": statistics.median(r["p95_ms"] for r in runs),
        "p95_each_run": [r["p95_ms"] for r in runs],
        "misses_in_runs": sum(r["misses"] for r in runs),
    }
    figures_out = {
        "command": "search-eval bench cache_wrk " + " ".join(argv if argv is not None else sys.argv[1:]),
        "stream": args.stream,
        "seed": args.seed,
        "tier": args.tier,
        "texts": len(texts),
        "runs": runs,
        "summary": summary,
    }
    line = (
        f"cache hits ({args.tier}, {len(texts)} texts, wrk c=1): median of {len(runs)} runs "
        f"P50 {summary['p50_ms']:.2f} ms, P95 {summary['p95_ms']:.2f} ms "
        f"(each run's P95: {summary['p95_each_run']}); misses during the runs: {summary['misses_in_runs']}"
    )
    print(line)
    write_result(args.out, figures_out, markdown=line)


if __name__ == "__main__":
    main()
