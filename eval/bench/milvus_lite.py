"""Milvus Lite engine latency at N rows: dense, sparse and both, with whatever milvus-lite is installed.

Used to choose the milvus-lite version (README "Engine choice"). Vectors are random (unit dense
vectors, Zipf-distributed sparse terms): an engine's search cost depends on row count, dimension
and sparsity, not on what the vectors mean.

    uv run search-eval bench milvus_lite --rows 100000 --queries 200
    # another version, in a throwaway venv:
    uv venv /tmp/ml322
    uv pip install -p /tmp/ml322 pymilvus==3.0.2 milvus-lite==3.2.2 numpy "setuptools<81"
    /tmp/ml322/bin/python eval/bench/milvus_lite.py --rows 100000
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient


def _percentile(values: list[float], q: float) -> float:
    # Not eval.bench.stats: this script also runs alone in a throwaway venv with another
    # milvus-lite (see the module docstring), where the project is not importable.
    return float(np.percentile(np.asarray(values), q))


def _sparse(rng: np.random.Generator, vocab: int, nnz: int) -> dict[int, float]:
    terms = np.unique(np.minimum(rng.zipf(1.3, size=nnz), vocab - 1))
    return {int(t): float(w) for t, w in zip(terms, rng.uniform(0.2, 2.5, size=len(terms)), strict=True)}


def run(rows: int, queries: int, dim: int, batch: int, index: str, seed: int) -> dict[str, Any]:
    """Build a collection of `rows` rows and time `queries` searches of each kind."""
    rng = np.random.default_rng(seed)
    version = importlib.metadata.version("milvus-lite")
    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(str(Path(tmp) / "bench.db"))
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("kind", DataType.VARCHAR, max_length=32)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        params = client.prepare_index_params()
        if index == "HNSW":
            params.add_index(
                "dense", index_type="HNSW", metric_type="COSINE", params={"M": 32, "efConstruction": 200}
            )
        else:
            extra = {"nlist": 1024} if index == "IVF_FLAT" else {}
            params.add_index("dense", index_type=index, metric_type="COSINE", params=extra)
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        client.create_collection("bench", schema=schema, index_params=params, consistency_level="Strong")
        started = time.perf_counter()
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            dense = rng.standard_normal((n, dim)).astype(np.float32)
            dense /= np.linalg.norm(dense, axis=1, keepdims=True)
            client.insert(
                "bench",
                [
                    {
                        "id": start + i,
                        "kind": "character" if i % 8 == 0 else "lore",
                        "dense": dense[i],
                        "sparse": _sparse(rng, 50_000, 60),
                    }
                    for i in range(n)
                ],
            )
        insert_s = time.perf_counter() - started
        search_params: dict[str, Any] = {"metric_type": "COSINE"}
        if index == "IVF_FLAT":
            search_params["params"] = {"nprobe": 32}
        if index == "HNSW":
            search_params["params"] = {"ef": 200}
        timings: dict[str, list[float]] = {"dense": [], "sparse": [], "hybrid": [], "dense_filtered": []}
        for q in range(queries + 10):
            vec = rng.standard_normal(dim).astype(np.float32)
            vec /= np.linalg.norm(vec)
            sp = _sparse(rng, 50_000, 6)
            t0 = time.perf_counter()
            client.search("bench", data=[vec], anns_field="dense", limit=100, search_params=search_params)
            t1 = time.perf_counter()
            client.search(
                "bench", data=[sp], anns_field="sparse", limit=100, search_params={"metric_type": "IP"}
            )
            t2 = time.perf_counter()
            client.search(
                "bench",
                data=[vec],
                anns_field="dense",
                limit=100,
                search_params=search_params,
                filter='kind in ["character"]',
            )
            t3 = time.perf_counter()
            if q >= 10:  # warm-up excluded
                timings["dense"].append((t1 - t0) * 1000)
                timings["sparse"].append((t2 - t1) * 1000)
                timings["hybrid"].append((t2 - t0) * 1000)
                timings["dense_filtered"].append((t3 - t2) * 1000)
        client.close()
    return {
        "milvus_lite": version,
        "rows": rows,
        "dim": dim,
        "index": index,
        "insert_s": round(insert_s, 1),
        **{
            name: {
                "p50_ms": round(statistics.median(vals), 2),
                "p95_ms": round(_percentile(vals, 95), 2),
                "p99_ms": round(_percentile(vals, 99), 2),
            }
            for name, vals in timings.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print one JSON line of figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument(
        "--index", default=None, help="FLAT, IVF_FLAT or HNSW (default: best the version offers)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    index = args.index or ("FLAT" if importlib.metadata.version("milvus-lite").startswith("2.") else "HNSW")
    print(json.dumps(run(args.rows, args.queries, args.dim, args.batch, index, args.seed)))


if __name__ == "__main__":
    main()
