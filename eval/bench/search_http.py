"""`/v1/search` over HTTP at a given corpus size, beside the raw engine calls measured in the same run.

    uv run search-eval bench search_http --chunks 100000 --concurrency 16 --duration 30 --runs 3

Steps, all on this machine:
1. Build (once, cached in `--data-dir`) a collection of the fixtures plus a synthetic corpus
   (`eval.synthetic`) of `--chunks` one-chunk documents of about 190 characters. Sparse BM25
   vectors always come from the real jieba + BM25 path. Passage dense vectors come from the real
   model (`--passages model`, ~60 chunks/s on 2 cores) or are random unit vectors
   (`--passages random`): exact (FLAT) search costs the same whatever the stored vectors are, so
   random vectors measure latency honestly in a fraction of the build time; relevance is not
   measured here.
2. Raw engine, in-process, one query at a time: query encoding, the Milvus dense search, the
   Milvus sparse search, and the whole `pipeline.search` (encode + both searches + fusion).
3. `search-api serve` on a loopback port with that data folder, driven by `eval.latency` at
   `--concurrency` for `--duration` seconds with the fixtures' queries; repeated `--runs` times.
Milvus Lite opens a file from one process only, so steps 2 and 3 run one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eval.bench.stats import latency_summary, rounded
from eval.latency import LatencyConfig, SearchModeName, load_query_texts, run_latency
from eval.server import running_server
from eval.synthetic import PassageStandIn, SyntheticCorpus
from retrieval.collections.specs import ensure_built_model, local_encoder
from retrieval.documents import read_jsonl
from retrieval.encoders.local import OnnxEncoder
from retrieval.engine import open_engine, open_knowledge_base
from retrieval.service import SearchQuery
from retrieval.settings import PROJECT_ROOT, Settings, load_settings
from retrieval.store.milvus import release_lite
from retrieval.types import SearchFilter, SearchMode, Vectors

QUERIES = PROJECT_ROOT / "fixtures" / "queries.jsonl"


class RandomPassages(PassageStandIn):
    """The real model for queries; random unit vectors for passages (see the module docstring)."""

    def __init__(self, real: OnnxEncoder, seed: int = 11):
        super().__init__(real)
        self.rng = np.random.default_rng(seed)

    async def encode_passages(self, texts: list[str]) -> Vectors:
        vectors = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


async def build_corpus(settings: Settings, chunks: int, passages: str, batch: int = 512) -> int:
    """Ingest fixtures + synthetic chunks unless the data folder already holds them."""
    marker = settings.data.dir / f"bench-corpus-{chunks}-{passages}.done"
    real = local_encoder(settings, ensure_built_model(settings))
    encoder = real if passages == "model" else RandomPassages(real)
    kb = await open_knowledge_base(settings, encoder)
    try:
        if marker.exists():
            return kb.stats.n_docs
        await kb.ingest(list(read_jsonl(settings.data.fixtures)))
        corpus = SyntheticCorpus(seed=7)
        docs = corpus.documents(chunks)
        with tqdm(total=chunks, desc=f"ingest ({passages} passage vectors)", unit="chunk") as bar:
            pending = []
            for doc in docs:
                pending.append(doc)
                if len(pending) == batch:
                    await kb.ingest(pending, chunk=False)
                    bar.update(len(pending))
                    pending = []
            if pending:
                await kb.ingest(pending, chunk=False)
                bar.update(len(pending))
        marker.write_text(json.dumps({"chunks": kb.stats.n_docs}))
        return kb.stats.n_docs
    finally:
        await kb.close()
        release_lite(settings.milvus_uri)


async def raw_engine(settings: Settings, queries: list[str], n: int) -> dict[str, Any]:
    """Per-stage latency in-process, one query at a time (20 warm-up queries excluded).

    Stages: query encoding, Milvus dense and sparse search, and the served search (the search
    service, cache off) in hybrid and in dense mode. `top10` keeps each query's dense top 10, to
    compare an approximate index with an exact one on the same queries.
    """
    encoder = local_encoder(settings, ensure_built_model(settings))
    engine = await open_engine(settings, encoder=encoder, cache=False, ingest_fixtures=False)
    kb, service = engine.kb, engine.service
    stages: dict[str, list[float]] = {
        name: [] for name in ("encode", "dense", "sparse", "pipeline_hybrid", "pipeline_dense")
    }
    top10: list[list[str]] = []
    try:
        depth = settings.fusion.candidates
        for i in range(n + 20):
            q = queries[i % len(queries)]
            t0 = time.perf_counter()
            vec = await encoder.encode_queries([q])
            t1 = time.perf_counter()
            hits = await kb.store.search_dense(vec[0], depth, SearchFilter())
            t2 = time.perf_counter()
            await kb.store.search_sparse(kb.sparse.query_vector(q), depth, SearchFilter())
            t3 = time.perf_counter()
            await service.search(SearchQuery(q, use_cache=False))
            t4 = time.perf_counter()
            await service.search(SearchQuery(q, mode=SearchMode.DENSE, use_cache=False))
            t5 = time.perf_counter()
            if i >= 20:
                for name, spent in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                    stages[name].append(spent * 1000)
                top10.append([h.id for h in hits[:10]])
        return {
            "chunks": await kb.store.count(),
            "stages": {name: rounded(latency_summary(values), 2) for name, values in stages.items()},
            "top10": top10,
        }
    finally:
        await engine.close()
        release_lite(settings.milvus_uri)


async def http_runs(
    data_dir: Path,
    queries: list[str],
    concurrency: int,
    duration: float,
    runs: int,
    mode: SearchModeName,
    extra_env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Start the real server (with `extra_env` added to its environment) and measure `runs` load runs."""
    env = {"SEARCH_DATA_INGEST_FIXTURES": "false", **(extra_env or {})}
    results = []
    async with running_server(data_dir, env, log=data_dir / "bench-server.log") as url:
        for run in range(runs):
            config = LatencyConfig(
                url=url,
                concurrency=concurrency,
                queries=tuple(queries),
                duration_s=duration,
                mode=mode,
                cache="off",
                warmup=20 if run == 0 else 0,
            )
            result = await run_latency(config)
            summary = result.summary
            if not summary["latency_ms"]["all"].get("count"):
                errors = [s.error or s.status for s in result.samples[:3]]
                raise RuntimeError(f"no successful request: {errors}")
            results.append(
                {
                    "run": run + 1,
                    "qps": summary["qps"],
                    "errors": summary["errors"],
                    **{k: summary["latency_ms"]["all"][k] for k in ("p50_ms", "p95_ms", "p99_ms", "count")},
                }
            )
            print(f"  HTTP run {run + 1}: {results[-1]}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print (and optionally write) its figures as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--passages", choices=("random", "model"), default="random")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--raw-queries", type=int, default=200)
    parser.add_argument("--mode", choices=("hybrid", "dense", "sparse"), default="hybrid")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    data_dir = args.data_dir or PROJECT_ROOT / "data" / f"bench-{args.chunks}-{args.passages}"
    base = load_settings(environ={**os.environ, "SEARCH_DATA_DIR": str(data_dir)})
    settings = dataclasses.replace(base, data=dataclasses.replace(base.data, ingest_fixtures=False))
    queries = load_query_texts(QUERIES)

    started = time.perf_counter()
    chunks = asyncio.run(build_corpus(settings, args.chunks, args.passages))
    print(f"corpus: {chunks} chunks in {data_dir} ({time.perf_counter() - started:.0f}s)", flush=True)
    raw = asyncio.run(raw_engine(settings, queries, args.raw_queries))
    raw.pop("top10")
    print(f"raw engine (in-process, sequential): {json.dumps(raw)}", flush=True)
    http = asyncio.run(http_runs(data_dir, queries, args.concurrency, args.duration, args.runs, args.mode))
    report = {
        "chunks": chunks,
        "passages": args.passages,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "raw_engine": raw,
        "http_runs": http,
        "http_median_of_runs": {
            k: round(statistics.median(r[k] for r in http), 2) for k in ("p50_ms", "p95_ms", "p99_ms", "qps")
        },
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
