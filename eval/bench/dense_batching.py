"""What one Milvus Lite dense search costs alone and as part of a batch of query vectors.

    uv run search-eval bench dense_batching --rows 100000 --batches 1 2 4 8 16 32

Takes the first `--rows` passage vectors of the cache (`bench poem_vectors` fills it; `--random`
draws unit vectors instead), loads them into a fresh Milvus Lite file with the served layout's
dense index (FLAT, COSINE), then for each batch size sends `--calls` searches of that many query
vectors (perturbed stored vectors, top `--limit`) and reports the call's wall time and the
engine's CPU per query vector (utime + stime of the Milvus Lite process, from /proc). The served
store shares one call among concurrent searches (`retrieval.batching`); this is why.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from eval.bench.cpu_per_request import tree_cpu_seconds
from eval.bench.lite_ivf_recall import vector_collection
from eval.bench.results import write_result
from eval.passage_vectors import DEFAULT_ROOT, VectorCache
from retrieval.store.milvus import release_lite


def lite_engine_cpu_s() -> float:
    """CPU seconds of this process's children: the Milvus Lite engine."""
    return tree_cpu_seconds(os.getpid())["children"]


def measure(client: MilvusClient, queries: np.ndarray, batch: int, calls: int, limit: int) -> dict[str, Any]:
    """Wall ms per call and engine CPU ms per query vector for `calls` calls of `batch` vectors."""
    params = {"metric_type": "COSINE"}
    data = [q.tolist() for q in queries]
    client.search("t", data[:batch], limit=limit, anns_field="v", search_params=params)  # warm
    walls: list[float] = []
    cpu0 = lite_engine_cpu_s()
    for call in range(calls):
        start = (call * batch) % max(len(data) - batch, 1)
        t0 = time.perf_counter()
        client.search("t", data[start : start + batch], limit=limit, anns_field="v", search_params=params)
        walls.append((time.perf_counter() - t0) * 1000)
    cpu_ms = (lite_engine_cpu_s() - cpu0) * 1000
    return {
        "batch": batch,
        "calls": calls,
        "wall_ms_per_call_median": round(statistics.median(walls), 2),
        "wall_ms_per_query": round(statistics.median(walls) / batch, 2),
        "engine_cpu_ms_per_query": round(cpu_ms / (calls * batch), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search-eval bench dense_batching", description=__doc__)
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--random", action="store_true", help="random unit vectors, not the cache")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--calls", type=int, default=0, help="per batch size; default 64/batch, >= 4")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    if args.random:
        vectors = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    else:
        vectors = VectorCache(DEFAULT_ROOT / args.model, args.dim).lookup_rows(args.rows)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picked = vectors[rng.choice(len(vectors), 128)]
    queries = picked + 0.05 * rng.standard_normal(picked.shape).astype(np.float32)

    points = []
    with tempfile.TemporaryDirectory() as tmp:
        uri = str(Path(tmp) / "batching.db")
        client = MilvusClient(uri)
        try:
            vector_collection(client, vectors, "FLAT")
            for batch in args.batches:
                point = measure(client, queries, batch, args.calls or max(4, 64 // batch), args.limit)
                points.append(point)
                print(point, flush=True)
        finally:
            client.close()
            release_lite(uri)
    if args.out is not None:
        source = "random unit vectors" if args.random else f"{args.model} poem passage vectors"
        write_result(
            args.out,
            {"rows": len(vectors), "dim": args.dim, "limit": args.limit, "vectors": source, "points": points},
        )
    return 0
