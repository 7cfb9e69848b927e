"""Scale on real text and real vectors: the poetry corpus at 10k, 100k and 300k chunks.

    apt-get install -y wrk                                                 # the load generator
    nice -n 19 uv run search-eval bench poem_vectors --count 300000        # once: the vectors
    uv run search-eval bench scale_poems --sizes 10000,100000,300000 --runs 3 --duration 10

One Milvus Lite collection grows through the sizes (`eval.poetry`: poems in one fixed shuffled
order, so a smaller collection is part of every larger one), embedded by the served model, every
passage vector from the on-disk cache (`eval.passage_vectors`; a missing one is encoded and
kept). At each size:

1. **exact** (FLAT): the raw engine call (pymilvus `search` on the dense field, one query vector
   at a time, in process) and its top 10 per query;
2. **IVF_FLAT** with `nlist = 4·sqrt(rows)` (Milvus' rule of thumb, or `--nlist`): recall@10 of its
   top 10 against the exact top 10 for the same query vectors, and the raw call's latency, at each
   `--nprobes` value; the smallest nprobe whose recall@10 is >= `--min-recall` is the one served;
3. `/v1/search` hybrid, cache off, driven by `wrk` at each `--concurrency` for `--runs` runs of
   `--duration` seconds, with FLAT and with IVF_FLAT at that nprobe: requests/s, P50/P95/P99
   (median of runs) and server CPU (the API process and its Milvus Lite child) per request.

Queries are 200 lines of verse and 40 title/author pairs drawn from poems in the first 10k, so
every size holds their source poem (`poem_queries`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import random
import re
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from eval.bench.cpu_per_request import DONE_HOOK, lua_script, measured_wrk_run, wrk_p95
from eval.bench.results import write_result
from eval.bench.scale import _collection, _disk_mb, _lite_memory_mb, recall_at_10, set_dense_index
from eval.bench.stats import latency_summary, rounded
from eval.passage_vectors import DEFAULT_ROOT, CachedPassages, VectorCache
from eval.poetry import poem_documents
from eval.server import server_process, wait_ready_sync
from retrieval.collections.specs import ensure_built_model, local_encoder
from retrieval.documents import Document
from retrieval.engine import open_knowledge_base
from retrieval.settings import PROJECT_ROOT, Settings, load_settings
from retrieval.store.milvus import release_lite

DEFAULT_OUT = PROJECT_ROOT / "eval" / "reports" / "scale_poems"
QUERY_SOURCE_POEMS = 10_000
BUDGET_P95_MS = {100_000: 150.0, 300_000: 300.0}
"""Issue targets: hybrid P95 at concurrency 16, cache off."""


def poem_queries(seed: int = 7, verses: int = 200, titles: int = 40) -> list[str]:
    """Verse lines (a quote a writer types) and "author title" pairs from the first poems."""
    docs = list(poem_documents(QUERY_SOURCE_POEMS))
    rng = random.Random(seed)
    out: list[str] = []
    for doc in rng.sample(docs, verses):
        lines = [s for s in re.split(r"[，。！？；、]", doc.text) if len(s) >= 5]
        if lines:
            out.append(rng.choice(lines))
    for doc in rng.sample(docs, titles):
        if doc.title:
            out.append(f"{doc.metadata.get('author', '')} {doc.title}".strip())
    return out


def _settings(base: Settings, index: str, nlist: int, nprobe: int) -> Settings:
    store = dataclasses.replace(base.store, lite_index=index, ivf_nlist=nlist, ivf_nprobe=nprobe)
    return dataclasses.replace(base, data=dataclasses.replace(base.data, ingest_fixtures=False), store=store)


async def grow(settings: Settings, target: int, batch: int = 2000) -> dict[str, Any]:
    """Ingest poems in corpus order until the collection holds at least `target` chunks."""
    real = local_encoder(settings, ensure_built_model(settings))
    cache = VectorCache(DEFAULT_ROOT / real.model_id, real.dim)
    encoder = CachedPassages(real, cache)
    marker = settings.data.dir / "bench-scale-poems.json"
    state = json.loads(marker.read_text()) if marker.exists() else {"poems": 0, "ingest_s": 0.0}
    encoded_before = len(cache)
    kb = await open_knowledge_base(settings, encoder)
    try:
        chunks = await kb.store.count()
        docs = poem_documents()
        for _ in range(int(state["poems"])):
            next(docs)
        while chunks < target:
            pending: list[Document] = [d for _, d in zip(range(batch), docs, strict=False)]
            if not pending:
                break
            started = time.perf_counter()
            await kb.ingest(pending)
            state["ingest_s"] += time.perf_counter() - started
            state["poems"] += len(pending)
            chunks = await kb.store.count()
            marker.write_text(json.dumps(state))
            print(f"  {state['poems']} poems, {chunks} chunks ({state['ingest_s']:.0f}s)", flush=True)
        return {
            "chunks": chunks,
            "poems": state["poems"],
            "ingest_s": round(state["ingest_s"], 1),
            "passages_encoded_here": len(cache) - encoded_before,
        }
    finally:
        await kb.close()
        release_lite(settings.milvus_uri)


def raw_dense(settings: Settings, collection: str, vectors: np.ndarray, nprobe: int | None) -> dict[str, Any]:
    """The engine call alone: one dense top-10 search per query vector; latency and the hits."""
    client = MilvusClient(settings.milvus_uri)
    params: dict[str, Any] = {"metric_type": "COSINE"}
    if nprobe is not None:
        params["params"] = {"nprobe": nprobe}
    try:
        for v in vectors[:20]:  # warm-up: the first searches load segments
            client.search(collection, [v.tolist()], limit=10, anns_field="dense", search_params=params)
        spent: list[float] = []
        top10: list[list[str]] = []
        for v in vectors:
            t0 = time.perf_counter()
            hits = client.search(collection, [v.tolist()], limit=10, anns_field="dense", search_params=params)
            spent.append((time.perf_counter() - t0) * 1000)
            top10.append([str(h["id"]) for h in hits[0]])
        return {"latency": rounded(latency_summary(spent), 2), "top10": top10}
    finally:
        client.close()
        release_lite(settings.milvus_uri)


def _median(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    """Median of a figure over runs; wrk leaves a percentile out when it did not parse (None)."""
    values = [float(r[key]) for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def http_load(
    data_dir: Path, env: dict[str, str], queries: Sequence[str], args: argparse.Namespace
) -> dict[str, Any]:
    """`/v1/search` under wrk at each concurrency: per-run figures and their medians."""
    script = data_dir / "poems.lua"
    script.write_text(lua_script(queries, "hybrid") + DONE_HOOK, encoding="utf-8")
    full_env = {"SEARCH_DATA_INGEST_FIXTURES": "false", **env}
    out: dict[str, Any] = {}
    with server_process(data_dir, env=full_env, log=data_dir / "server.log") as (url, proc):
        wait_ready_sync(url, proc)
        wrk_p95(script, url, max(args.concurrency), 3)  # warm-up
        for c in args.concurrency:
            runs = []
            for _ in range(args.runs):
                figures = measured_wrk_run(script, url, proc.pid, c, args.duration)
                runs.append(figures)
                print(f"    c={c}: {figures}", flush=True)
            medians = {
                k: _median(runs, k) for k in ("rps", "p50_ms", "p95_ms", "p99_ms", "cpu_ms_per_request")
            }
            out[str(c)] = {"runs": runs, "median": medians, "errors": sum(r["errors"] for r in runs)}
    return out


def measure_size(
    args: argparse.Namespace, loaded: Settings, size: int, queries: list[str], qvecs: np.ndarray
) -> dict[str, Any]:
    """Grow to `size`; exact and IVF engine figures; HTTP load on both."""
    flat = _settings(loaded, "FLAT", 0, 0)
    grown = asyncio.run(grow(flat, size))
    print(f"size {size}: {grown}", flush=True)
    collection = _collection(flat)
    rows = grown["chunks"]
    nlist = args.nlist or max(16, round(4 * math.sqrt(rows)))
    point: dict[str, Any] = {"size": size, **grown, "nlist": nlist, "disk_mb": _disk_mb(args.data_dir)}

    set_dense_index(flat, collection, "FLAT", nlist)
    exact = raw_dense(flat, collection, qvecs, None)
    point["flat"] = {"raw_dense": exact["latency"]}
    ivf = _settings(loaded, "IVF_FLAT", nlist, 1)
    point["ivf_build_s"] = round(set_dense_index(ivf, collection, "IVF_FLAT", nlist), 1)
    sweep = []
    for nprobe in args.nprobes:
        got = raw_dense(ivf, collection, qvecs, nprobe)
        recall = recall_at_10(got["top10"], exact["top10"])
        sweep.append({"nprobe": nprobe, "recall_at_10": recall, "raw_dense": got["latency"]})
        print(f"  IVF_FLAT nlist={nlist} nprobe={nprobe}: recall@10 {recall} {got['latency']}", flush=True)
    point["ivf_sweep"] = sweep
    chosen = next((s for s in sweep if s["recall_at_10"] >= args.min_recall), None)
    point["ivf_chosen_nprobe"] = chosen["nprobe"] if chosen else None
    point.update(_lite_memory_mb())

    if chosen is not None:
        env = {
            "SEARCH_STORE_LITE_INDEX": "IVF_FLAT",
            "SEARCH_STORE_IVF_NLIST": str(nlist),
            "SEARCH_STORE_IVF_NPROBE": str(chosen["nprobe"]),
        }
        print(f"  HTTP, IVF_FLAT nprobe={chosen['nprobe']}", flush=True)
        point["ivf_http"] = http_load(args.data_dir, env, queries, args)
    set_dense_index(flat, collection, "FLAT", nlist)
    print("  HTTP, FLAT", flush=True)
    point["flat"]["http"] = http_load(args.data_dir, {"SEARCH_STORE_LITE_INDEX": "FLAT"}, queries, args)
    return point


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The measured table: per size, per index, per concurrency."""
    lines = [
        "Poetry corpus, hybrid `/v1/search`, cache off, wrk; medians of "
        f"{report['runs']} runs of {report['duration_s']:g} s. Raw: pymilvus dense top-10 search, "
        f"in process, sequential, {report['queries']} query vectors. Recall@10 against FLAT.",
        "",
        "| chunks | index | recall@10 | raw dense P50 / P95 ms | c | req/s | P50 / P95 / P99 ms "
        "| CPU ms/req |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in report["points"]:
        chosen = next((s for s in p["ivf_sweep"] if s["nprobe"] == p["ivf_chosen_nprobe"]), None)
        rows = [("FLAT", "exact", p["flat"]["raw_dense"], p["flat"].get("http", {}))]
        if chosen is not None:
            rows.append(
                (
                    f"IVF_FLAT nlist {p['nlist']} nprobe {chosen['nprobe']}",
                    f"{chosen['recall_at_10']:.3f}",
                    chosen["raw_dense"],
                    p.get("ivf_http", {}),
                )
            )
        for name, recall, raw, http in rows:
            for c, fig in http.items():
                m = fig["median"]
                lines.append(
                    f"| {p['chunks']:,} | {name} | {recall} "
                    f"| {raw['p50_ms']:.1f} / {raw['p95_ms']:.1f} | {c} "
                    f"| {m['rps']:.0f} | {m['p50_ms']:.0f} / {m['p95_ms']:.0f} / {_cell(m['p99_ms'])} "
                    f"| {m['cpu_ms_per_request']:.1f} |"
                )
    lines += ["", "IVF_FLAT sweeps (recall@10, raw dense P50 / P95 ms):", ""]
    for p in report["points"]:
        cells = ", ".join(
            f"nprobe {s['nprobe']}: {s['recall_at_10']:.3f} ({s['raw_dense']['p50_ms']:.1f} / "
            f"{s['raw_dense']['p95_ms']:.1f})"
            for s in p["ivf_sweep"]
        )
        lines.append(f"- {p['chunks']:,} chunks, nlist {p['nlist']} (built in {p['ivf_build_s']} s): {cells}")
    return "\n".join(lines) + "\n"


def _http(point: dict[str, Any], key: str) -> dict[str, Any]:
    """One index's HTTP figures of a size (empty when not measured)."""
    found = point["flat"].get("http") if key == "flat_http" else point.get("ivf_http")
    return dict(found or {})


def plot(report: dict[str, Any], path: Path) -> None:
    """P95 at the highest concurrency against size, per index, with the budget points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = str(max(report["concurrency"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    points = sorted(report["points"], key=lambda p: p["chunks"])
    for label, key, colour in (
        ("FLAT (exact)", "flat_http", "tab:red"),
        ("IVF_FLAT (recall@10 >= min)", "ivf_http", "tab:blue"),
    ):
        served = [(p["chunks"], _http(p, key)) for p in points]
        xs = [n for n, http in served if c in http]
        ys = [http[c]["median"]["p95_ms"] for _, http in served if c in http]
        if xs:
            ax.plot(xs, ys, "o-", color=colour, label=f"{label}: HTTP hybrid P95, c={c}")
    for size, budget in BUDGET_P95_MS.items():
        ax.plot([size], [budget], "k_", markersize=20)
        ax.annotate(
            f"target {budget:.0f} ms", (size, budget), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks (classical poems, real vectors)")
    ax.set_ylabel("P95 latency (ms)")
    ax.set_title("Milvus Lite on 2 cores, real poems: hybrid P95 against size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="search-eval bench scale_poems",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data" / "scale-poems")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--nlist", type=int, default=0, help="default 4*sqrt(rows)")
    parser.add_argument("--nprobes", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--min-recall", type=float, default=0.98)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install the Debian package `wrk`")

    args.data_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_settings(environ={**os.environ, "SEARCH_DATA_DIR": str(args.data_dir)})
    queries = poem_queries()
    encoder = local_encoder(loaded, ensure_built_model(loaded))
    qvecs = np.asarray(encoder.encode_queries_sync(queries), dtype=np.float32)
    report: dict[str, Any] = {
        "command": "search-eval bench scale_poems " + " ".join(argv or []),
        "model": encoder.model_id,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "duration_s": args.duration,
        "queries": len(queries),
        "min_recall": args.min_recall,
        "points": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",")):
        report["points"].append(measure_size(args, loaded, size, queries, qvecs))
        write_result(args.out / "scale_poems.json", report, markdown=markdown(report))
        plot(report, args.out / "scale_poems.png")
    print(markdown(report))
