"""Milvus Lite's IVF_FLAT recall on real vectors, alone: one dense field, no other schema.

    uv run search-eval bench lite_ivf_recall --rows 150000 --nlist 256

Takes the first `--rows` passage vectors of the cache (`bench poem_vectors` fills it), builds
IVF_FLAT over them in a fresh Milvus Lite file and compares the top 10 of 50 perturbed stored
vectors with the exact top 10 (NumPy), at several nprobe, both search-parameter forms pymilvus
accepts. At nprobe = nlist IVF probes every list, so anything below 1.0 there is the engine's.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

from eval.passage_vectors import DEFAULT_ROOT, VectorCache
from retrieval.store.milvus import release_lite


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search-eval bench lite_ivf_recall", description=__doc__)
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--nlist", type=int, default=256)
    args = parser.parse_args(argv)

    vectors = VectorCache(DEFAULT_ROOT / args.model, args.dim).lookup_rows(args.rows)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    queries = vectors[rng.choice(len(vectors), 50)] + 0.05 * rng.standard_normal((50, args.dim)).astype(
        np.float32
    )
    exact = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in queries]
    with tempfile.TemporaryDirectory() as tmp:
        uri = str(Path(tmp) / "ivf.db")
        client = MilvusClient(uri)
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=args.dim)
        client.create_collection("t", schema=schema)
        for start in range(0, len(vectors), 5000):
            rows = range(start, min(start + 5000, len(vectors)))
            client.insert("t", [{"id": i, "v": vectors[i].tolist()} for i in rows])
        params = client.prepare_index_params()
        params.add_index("v", index_type="IVF_FLAT", metric_type="COSINE", params={"nlist": args.nlist})
        client.create_index("t", params)
        client.load_collection("t")
        print(client.describe_index("t", "v"))
        for nprobe in sorted({1, 8, 64, args.nlist}):
            for form, search in (
                ("nested", {"metric_type": "COSINE", "params": {"nprobe": nprobe}}),
                ("flat", {"metric_type": "COSINE", "nprobe": nprobe}),
            ):
                hits = client.search(
                    "t", [q.tolist() for q in queries], limit=10, anns_field="v", search_params=search
                )
                recall = np.mean(
                    [len({h["id"] for h in hits[i]} & exact[i]) / 10 for i in range(len(queries))]
                )
                print(
                    f"rows {len(vectors)} nlist {args.nlist} nprobe {nprobe} ({form}): recall@10 {recall:.3f}"
                )
        client.close()
        release_lite(uri)
    return 0
