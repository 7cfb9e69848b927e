"""What the verified semantic band's check costs, next to the full search it can save.

    uv run search-eval bench cache_verify --rounds 3

Over HTTP against `search-api serve` on the fixtures, cache bypassed: for every judged query, a
BM25-only search for the top 10 (what the check runs: tokenise, one sparse store search) and a
full hybrid search (encode, dense and sparse retrieval, fusion, routing), each `--rounds` times.
Reported are the server's own `took_ms` and, for the BM25 search, its store stage (`sparse_ms`).
A verified hit pays encoding plus the check instead of the whole search.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from eval.bench.cache_stream import read_queries
from eval.bench.stats import percentile
from eval.server import running_server
from retrieval.settings import PROJECT_ROOT


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "n": len(values),
    }


async def measure(data_dir: Path, rounds: int) -> dict[str, Any]:
    """Server-side times of the check's BM25 search and of a full uncached search."""
    texts = [q.text for q in read_queries()]
    check: list[float] = []
    check_store: list[float] = []
    full: list[float] = []
    encode: list[float] = []
    async with (
        running_server(data_dir) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        for text in texts[:10]:  # warm-up
            await client.post("/v1/search", json={"query": text, "cache": False})
        for _ in range(rounds):
            for text in texts:
                sparse = (
                    await client.post(
                        "/v1/search", json={"query": text, "top_k": 10, "mode": "sparse", "cache": False}
                    )
                ).json()
                hybrid = (
                    await client.post("/v1/search", json={"query": text, "top_k": 10, "cache": False})
                ).json()
                check.append(sparse["took_ms"])
                check_store.append(sparse["timings_ms"].get("sparse_ms", 0.0))
                full.append(hybrid["took_ms"])
                encode.append(hybrid["timings_ms"].get("encode_ms", 0.0))
    return {
        "queries": len(texts),
        "rounds": rounds,
        "check_took_ms": _summary(check),
        "check_store_ms": _summary(check_store),
        "full_search_took_ms": _summary(full),
        "full_search_encode_ms": _summary(encode),
        "check_share_of_full_p50": round(percentile(check, 50) / percentile(full, 50), 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print the timings as one JSON object."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data" / "bench-cache")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.data_dir, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
