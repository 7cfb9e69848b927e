"""What the verified semantic band's check costs, next to the full search it can save.

    uv run search-eval bench cache_verify --rounds 5

In process, on the fixtures: for every judged query, the check's evidence (the query's BM25 top
10 through the store, `SearchService.sparse_evidence`) and a full uncached hybrid search
(encode, dense and sparse retrieval, fusion, routing), each timed `--rounds` times. A verified
hit pays encoding plus the check instead of the whole search.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.bench.cache_stream import read_queries
from eval.bench.stats import percentile
from retrieval.cache.protocol import normalise_query
from retrieval.engine import open_engine
from retrieval.service import SearchQuery
from retrieval.settings import PROJECT_ROOT, load_settings


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "n": len(values),
    }


async def measure(data_dir: Path, rounds: int, depth: int) -> dict[str, Any]:
    """Times of the check, of encoding alone, and of a full uncached search, per query and round."""
    settings = load_settings(environ={**os.environ, "SEARCH_DATA_DIR": str(data_dir)})
    engine = await open_engine(settings, cache=False)
    service = engine.service
    texts = [normalise_query(q.text) for q in read_queries()]
    check: list[float] = []
    encode: list[float] = []
    full: list[float] = []
    try:
        for text in texts[:5]:  # warm-up: first calls load caches and thread pools
            await service.search(SearchQuery(text, use_cache=False))
        for _ in range(rounds):
            for text in texts:
                query = SearchQuery(text, use_cache=False)
                t0 = time.perf_counter()
                await service.sparse_evidence(query, text, depth)
                t1 = time.perf_counter()
                await engine.kb.encoder.encode_queries([text])
                t2 = time.perf_counter()
                await service.search(query)
                t3 = time.perf_counter()
                check.append((t1 - t0) * 1000)
                encode.append((t2 - t1) * 1000)
                full.append((t3 - t2) * 1000)
    finally:
        await engine.close()
    return {
        "queries": len(texts),
        "rounds": rounds,
        "depth": depth,
        "check_ms": _summary(check),
        "encode_ms": _summary(encode),
        "full_search_ms": _summary(full),
        "check_share_of_full_p50": round(percentile(check, 50) / percentile(full, 50), 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print the timings as one JSON object."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--depth", type=int, default=10, help="evidence depth (cache.verify_depth)")
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data" / "bench-cache")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.data_dir, args.rounds, args.depth)), indent=2))


if __name__ == "__main__":
    main()
