"""Milvus Lite's IVF_FLAT recall on real vectors, alone: one dense field, no other schema.

    uv run search-eval bench lite_ivf_recall --rows 150000 --nlist 16 256 1024

Takes the first `--rows` passage vectors of the cache (`bench poem_vectors` fills it), builds
IVF_FLAT over them in a fresh Milvus Lite file for each `--nlist` and compares the top 10 of 50
perturbed stored vectors with the exact top 10 (NumPy), at several nprobe, both search-parameter
forms pymilvus accepts. At nprobe = nlist IVF probes every list, so anything below 1.0 there is
the engine's. Last, how many distinct answers (the 50 top-10 lists) all those settings gave: one
means the parameters never reached the search.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from eval.passage_vectors import DEFAULT_ROOT, VectorCache
from retrieval.store.milvus import release_lite


def vector_collection(
    client: MilvusClient, vectors: np.ndarray, index_type: str, params: dict[str, Any] | None = None
) -> None:
    """Collection "t": an int64 id (the row number) and one COSINE-indexed dense field "v", loaded."""
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    client.create_collection("t", schema=schema)
    for start in range(0, len(vectors), 5000):
        rows = range(start, min(start + 5000, len(vectors)))
        client.insert("t", [{"id": i, "v": vectors[i].tolist()} for i in rows])
    index = client.prepare_index_params()
    index.add_index("v", index_type=index_type, metric_type="COSINE", params=params or {})
    client.create_index("t", index)
    client.load_collection("t")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search-eval bench lite_ivf_recall", description=__doc__)
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--nlist", type=int, nargs="+", default=[256])
    args = parser.parse_args(argv)

    vectors = VectorCache(DEFAULT_ROOT / args.model, args.dim).lookup_rows(args.rows)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    queries = vectors[rng.choice(len(vectors), 50)] + 0.05 * rng.standard_normal((50, args.dim)).astype(
        np.float32
    )
    exact = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in queries]
    answers: dict[tuple[int, ...], list[str]] = {}
    for nlist in args.nlist:
        with tempfile.TemporaryDirectory() as tmp:
            uri = str(Path(tmp) / "ivf.db")
            client = MilvusClient(uri)
            vector_collection(client, vectors, "IVF_FLAT", {"nlist": nlist})
            print(client.describe_index("t", "v"))
            for nprobe in sorted({1, 8, 64, nlist}):
                for form, search in (
                    ("nested", {"metric_type": "COSINE", "params": {"nprobe": nprobe}}),
                    ("flat", {"metric_type": "COSINE", "nprobe": nprobe}),
                ):
                    hits = client.search(
                        "t", [q.tolist() for q in queries], limit=10, anns_field="v", search_params=search
                    )
                    top10 = [[int(h["id"]) for h in hits[i]] for i in range(len(queries))]
                    recall = np.mean([len(set(top10[i]) & exact[i]) / 10 for i in range(len(queries))])
                    setting = f"nlist {nlist} nprobe {nprobe} ({form})"
                    answers.setdefault(tuple(i for top in top10 for i in top), []).append(setting)
                    print(f"rows {len(vectors)} {setting}: recall@10 {recall:.3f}", flush=True)
            client.close()
            release_lite(uri)
    print(f"{len(answers)} distinct answer(s) over {sum(map(len, answers.values()))} settings")
    return 0
