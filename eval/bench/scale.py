"""Query latency against corpus size on the embedded engine (Milvus Lite 2.5.1): the scale curve.

    uv run search-eval bench scale --sizes 10000,50000,100000,200000 --concurrency 8 \
        --duration 20 --runs 3 --lock /tmp/bench.lock --out eval/reports/scale

One collection grows through the sizes (fixtures plus `eval.synthetic` chunks of about 190
characters); at each size, for each Lite dense index (FLAT, then IVF_FLAT, switched in place on
the same rows):

1. the raw engine, in-process, one query at a time: query encoding, the Milvus dense search, the
   Milvus sparse search, and the whole `pipeline.search` in hybrid and in dense mode;
2. IVF_FLAT's recall@10 against FLAT's exact top 10 for the same query vectors;
3. `search-api serve` on that data folder, driven over HTTP at `--concurrency` for `--duration`
   seconds, `--runs` times (hybrid, cache off); the median of the runs is reported;
4. the resident memory of the Milvus Lite process and the size of its file.

Passage vectors. Encoding 200k passages with the model would take about an hour on 2 cores, so
only the first `--base` passages (the fixtures, then synthetic ones) are encoded by the real
model; every later passage gets a blend of two real passage vectors plus a little isotropic noise
(`BlendedPassages`). Exact search costs the same whatever the vectors are; IVF's cost and recall
depend on how the vectors cluster, and blends of real vectors keep the model's anisotropy and
neighbourhoods far better than uniform random vectors would. Queries, BM25 vectors, texts and
everything else are real.

With `--lock`, each step (an ingest slice, one measurement) holds an exclusive `flock` on that
file, so benchmarks of other people on the same machine take turns with this one instead of
overlapping it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pymilvus import MilvusClient

from eval.bench.search_http import QUERIES, http_runs, raw_engine
from eval.latency import load_query_texts
from eval.synthetic import PassageStandIn, SyntheticCorpus
from retrieval.collections.specs import ensure_built_model, local_encoder
from retrieval.documents import read_jsonl
from retrieval.encoders.protocol import Encoder
from retrieval.engine import open_knowledge_base
from retrieval.settings import PROJECT_ROOT, Settings, load_settings
from retrieval.store.milvus import release_lite
from retrieval.types import Vectors

INDEXES = ("FLAT", "IVF_FLAT")
# Design budget at >= 1M records (issue 8): P95 of a hybrid and of a vector-only search.
BUDGET_HYBRID_MS = 600.0
BUDGET_VECTOR_MS = 400.0


_turns_held = 0


@contextlib.contextmanager
def turn(lock: Path | None) -> Iterator[None]:
    """Hold the shared benchmark lock for one step, so CPU-heavy runs on this machine never overlap.

    Re-entrant: a step inside a step keeps the outer hold (a second `flock` from this process
    on a new file description would wait for itself).
    """
    global _turns_held
    if lock is None or _turns_held:
        _turns_held += 1
        try:
            yield
        finally:
            _turns_held -= 1
        return
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        _turns_held += 1
        try:
            yield
        finally:
            _turns_held -= 1
            fcntl.flock(fh, fcntl.LOCK_UN)


class BlendedPassages(PassageStandIn):
    """Real vectors for the first `base` passages; blends of two of them for every later one."""

    def __init__(self, real: Encoder, base: int, cache: Path, seed: int = 13, noise: float = 0.25):
        super().__init__(real)
        self.base_size, self.cache, self.noise = base, cache, noise
        self.rng = np.random.default_rng(seed)
        self.base: npt.NDArray[np.float32] = (
            np.load(cache) if cache.exists() else np.zeros((0, real.dim), dtype=np.float32)
        )

    async def encode_passages(self, texts: list[str]) -> Vectors:
        missing = self.base_size - len(self.base)
        if missing > 0:
            encoded = await self.real.encode_passages(texts[:missing])
            self.base = np.vstack([self.base, encoded]).astype(np.float32)
            np.save(self.cache, self.base)
            if len(texts) <= missing:
                return encoded
            return np.vstack([encoded, self._blend(len(texts) - missing)])
        return self._blend(len(texts))

    def _blend(self, n: int) -> npt.NDArray[np.float32]:
        a = self.base[self.rng.integers(0, len(self.base), n)]
        b = self.base[self.rng.integers(0, len(self.base), n)]
        # Mostly one passage, partly another: points between real neighbourhoods, not on top of them.
        w = self.rng.uniform(0.55, 1.0, (n, 1)).astype(np.float32)
        noise = self.rng.standard_normal((n, self.dim)).astype(np.float32)
        noise *= self.noise / np.sqrt(self.dim)
        vectors = w * a + (1 - w) * b + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32)


def _settings(base: Settings, index: str) -> Settings:
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, ingest_fixtures=False),
        store=dataclasses.replace(base.store, lite_index=index),
    )


async def grow(settings: Settings, target: int, base: int, lock: Path | None, step: int = 200_000) -> float:
    """Ingest synthetic chunks until the collection holds the fixtures plus `target`; seconds spent."""
    real = local_encoder(settings, ensure_built_model(settings))
    encoder = BlendedPassages(real, base, settings.data.dir / "base-vectors.npy")
    kb = await open_knowledge_base(settings, encoder)
    spent = 0.0
    try:
        marker = settings.data.dir / "bench-scale-fixtures.json"
        if not marker.exists():
            with turn(lock):
                started = time.perf_counter()
                await kb.ingest(list(read_jsonl(settings.data.fixtures)))
                spent += time.perf_counter() - started
            marker.write_text(json.dumps({"fixture_chunks": await kb.store.count()}))
        fixture_chunks = int(json.loads(marker.read_text())["fixture_chunks"])
        have = await kb.store.count() - fixture_chunks
        corpus = SyntheticCorpus(seed=7)
        docs = corpus.documents(target)
        for _ in range(have):  # deterministic corpus: skip what an earlier run ingested
            next(docs)
        while have < target:
            batch_end = min(target, have + step)
            with turn(lock):
                started = time.perf_counter()
                pending = [next(docs) for _ in range(batch_end - have)]
                for start in range(0, len(pending), 512):
                    await kb.ingest(pending[start : start + 512], chunk=False)
                spent += time.perf_counter() - started
            have = batch_end
            print(f"  ingested {have} synthetic chunks ({spent:.0f}s so far)", flush=True)
        return spent
    finally:
        await kb.close()
        release_lite(settings.milvus_uri)


def set_dense_index(settings: Settings, collection: str, index: str, nlist: int | None = None) -> float:
    """Rebuild the dense index of the existing rows as `index` (IVF_FLAT with `nlist` lists,
    default `store.ivf_nlist`); returns the seconds it took, 0 when that index is in place."""
    lists = nlist or settings.store.ivf_nlist
    client = MilvusClient(settings.milvus_uri)
    try:
        current = client.describe_index(collection, "dense") or {}
        same_lists = index == "FLAT" or str(current.get("nlist", "")) == str(lists)
        if current.get("index_type") == index and same_lists:
            return 0.0
        started = time.perf_counter()
        client.release_collection(collection)
        client.drop_index(collection, "dense")
        params = client.prepare_index_params()
        extra = {"nlist": lists} if index == "IVF_FLAT" else {}
        params.add_index("dense", index_type=index, metric_type="COSINE", params=extra)
        client.create_index(collection, params)
        client.load_collection(collection)
        return time.perf_counter() - started
    finally:
        client.close()
        release_lite(settings.milvus_uri)


def _lite_memory_mb() -> dict[str, float]:
    """Resident and peak memory of this process's Milvus Lite server (a child process)."""
    me, rss, peak = str(os.getpid()), 0.0, 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == me and "milvus" in fields.get("Name", ""):
            rss += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
            peak += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
    return {"lite_rss_mb": round(rss, 1), "lite_peak_rss_mb": round(peak, 1)}


async def measure_engine(settings: Settings, queries: list[str], n: int) -> dict[str, Any]:
    """`bench_search_http.raw_engine`'s stages and dense top 10s, plus Milvus Lite's memory."""
    return {**await raw_engine(settings, queries, n), **_lite_memory_mb()}


def recall_at_10(approx: list[list[str]], exact: list[list[str]]) -> float:
    """Mean share of the exact top 10 that the approximate search also returned."""
    shares = [len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True) if e]
    return round(statistics.fmean(shares), 4) if shares else 0.0


def _disk_mb(data_dir: Path) -> float:
    files = [p for p in data_dir.glob("milvus.db*")] + list(data_dir.glob(".milvus.db*/**/*"))
    return round(sum(p.stat().st_size for p in files if p.is_file()) / 2**20, 1)


def _collection(settings: Settings) -> str:
    from retrieval.collections.stores import pointer_for

    return asyncio.run(pointer_for(settings).active())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Grow the collection through the sizes and measure every index at every size."""
    data_dir: Path = args.data_dir
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    queries = load_query_texts(QUERIES)
    # Read once: the configuration files may change while a long run goes on.
    loaded = load_settings(environ={**os.environ, "SEARCH_DATA_DIR": str(data_dir)})
    results_path = out / "scale.json"
    report: dict[str, Any] = (
        json.loads(results_path.read_text()) if results_path.exists() and args.resume else {"points": []}
    )
    report.update(
        {
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "runs": args.runs,
            "raw_queries": args.raw_queries,
            "base_vectors": args.base,
            "ivf": {
                "nlist": loaded.store.ivf_nlist,
                "nprobe": loaded.store.ivf_nprobe,
            },
        }
    )
    order = list(args.indexes)
    for size in args.sizes:
        # One turn of the lock per size (growth, then every index): few turns finish sooner when
        # other benchmarks queue for the lock too.
        with turn(args.lock):
            order = measure_size(args, loaded, size, order, report, queries)
    return report


def measure_size(
    args: argparse.Namespace,
    loaded: Settings,
    size: int,
    order: list[str],
    report: dict[str, Any],
    queries: list[str],
) -> list[str]:
    """Grow to `size`, then measure each index in `order`; returns the order for the next size."""
    data_dir: Path = args.data_dir
    out: Path = args.out
    results_path = out / "scale.json"
    done = {(p["size"], p["index"]) for p in report["points"]}
    settings = _settings(loaded, order[0])
    spent = asyncio.run(grow(settings, size, args.base, args.lock))
    print(f"size {size}: ingest {spent:.0f}s", flush=True)
    collection = _collection(settings)
    exact: list[list[str]] | None = None
    for index in order:
        settings = _settings(loaded, index)
        if (size, index) in done:
            continue
        with turn(args.lock):  # already held when called from `run`
            rebuild_s = set_dense_index(settings, collection, index)
            engine = asyncio.run(measure_engine(settings, queries, args.raw_queries))
            http = asyncio.run(
                http_runs(
                    data_dir,
                    queries,
                    args.concurrency,
                    args.duration,
                    args.runs,
                    "hybrid",
                    {"SEARCH_STORE_LITE_INDEX": index},
                )
            )
        top10 = engine.pop("top10")
        point: dict[str, Any] = {
            "size": size,
            "index": index,
            "ingest_s": round(spent, 1),
            "index_rebuild_s": round(rebuild_s, 1),
            "disk_mb": _disk_mb(data_dir),
            **engine,
        }
        if index == "FLAT":
            exact = top10
            (out / f"flat-top10-{size}.json").write_text(json.dumps(top10))
        else:
            flat_path = out / f"flat-top10-{size}.json"
            if exact is None and flat_path.exists():
                exact = json.loads(flat_path.read_text())
            if exact is not None:
                point["recall_at_10_vs_flat"] = recall_at_10(top10, exact)
        print(f"  {index} engine: {json.dumps(point)}", flush=True)
        point["http_runs"] = http
        point["http"] = {
            k: round(statistics.median(h[k] for h in http), 2) for k in ("p50_ms", "p95_ms", "p99_ms", "qps")
        }
        print(f"  {index} HTTP c={args.concurrency}: {point['http']}", flush=True)
        report["points"].append(point)
        results_path.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    return order[::-1]  # the index in place now is measured first at the next size


def plot(report: dict[str, Any], path: Path) -> None:
    """P95 against corpus size: HTTP and raw engine, per index, with the design budgets."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for index, colour in zip(INDEXES, ("tab:red", "tab:blue"), strict=True):
        points = sorted((p for p in report["points"] if p["index"] == index), key=lambda p: p["size"])
        if not points:
            continue
        sizes = [p["chunks"] for p in points]
        curves = [
            ([p["http"]["p95_ms"] for p in points], "o-", f"HTTP hybrid P95, c={report['concurrency']}"),
            (
                [p["stages"]["pipeline_hybrid"]["p95_ms"] for p in points],
                "s--",
                "engine hybrid P95, sequential",
            ),
            (
                [p["stages"]["pipeline_dense"]["p95_ms"] for p in points],
                "^:",
                "engine vector P95, sequential",
            ),
        ]
        for values, style, label in curves:
            ax.plot(sizes, values, style, color=colour, label=f"{index}: {label}")
    # Raw-engine runs at other sizes (`eval.bench.milvus_lite`, saved beside the report as
    # milvus-lite-<rows>-<index>.json): Milvus dense + sparse only, random vectors.
    for extra in sorted(path.parent.glob("milvus-lite-*.json")):
        raw = json.loads(extra.read_text())
        colour = "tab:red" if raw["index"] == "FLAT" else "tab:blue"
        ax.plot(
            [raw["rows"]],
            [raw["hybrid"]["p95_ms"]],
            "D",
            mfc="none",
            color=colour,
            label=f"{raw['index']}: Milvus dense+sparse P95, sequential (bench_milvus_lite)",
        )
    ax.axhline(BUDGET_HYBRID_MS, color="grey", linestyle="-", linewidth=0.8)
    ax.text(ax.get_xlim()[1], BUDGET_HYBRID_MS, "hybrid budget 600 ms ", va="bottom", ha="right", fontsize=8)
    ax.axhline(BUDGET_VECTOR_MS, color="grey", linestyle="--", linewidth=0.8)
    ax.text(ax.get_xlim()[1], BUDGET_VECTOR_MS, "vector budget 400 ms ", va="bottom", ha="right", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the collection")
    ax.set_ylabel("P95 latency (ms)")
    ax.set_title("Milvus Lite 2.5.1 on 2 cores: P95 against corpus size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The measured table, one row per size and index."""
    lines = [
        f"HTTP: hybrid `/v1/search`, cache off, concurrency {report['concurrency']}, "
        f"{report['runs']} runs of {report['duration_s']:.0f} s, median of runs. Engine: in-process, "
        f"sequential, {report['raw_queries']} queries, P50 / P95 ms.",
        "",
        "| chunks | index | HTTP P50 / P95 | QPS | engine hybrid | engine vector | Milvus dense "
        "| Milvus sparse | encode | IVF recall@10 | Lite RSS | file |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in sorted(report["points"], key=lambda p: (p["size"], p["index"])):
        s = p["stages"]

        def pair(name: str, s: dict[str, Any] = s) -> str:
            return f"{s[name]['p50_ms']:.1f} / {s[name]['p95_ms']:.1f}"

        recall = p.get("recall_at_10_vs_flat")
        lines.append(
            f"| {p['chunks']:,} | {p['index']} | {p['http']['p50_ms']:.0f} / {p['http']['p95_ms']:.0f} ms "
            f"| {p['http']['qps']:.0f} | {pair('pipeline_hybrid')} | {pair('pipeline_dense')} "
            f"| {pair('dense')} "
            f"| {pair('sparse')} | {pair('encode')} | {_recall_cell(p['index'], recall)} "
            f"| {p['lite_rss_mb']:.0f} MB | {p['disk_mb']:.0f} MB |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _recall_cell(index: str, recall: float | None) -> str:
    if index == "FLAT":
        return "exact"
    return "n/a" if recall is None else f"{recall:.3f}"


def _sizes(text: str) -> list[int]:
    return sorted(int(s) for s in text.split(",") if s.strip())


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or with --report-only, re-draw) the scale benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 50_000, 100_000, 200_000])
    parser.add_argument("--indexes", type=lambda t: t.split(","), default=list(INDEXES))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--raw-queries", type=int, default=200)
    parser.add_argument("--base", type=int, default=2000, help="passages encoded by the real model")
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data" / "bench-scale")
    parser.add_argument("--lock", type=Path, default=None, help="flock file shared with other benchmarks")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "eval" / "reports" / "scale")
    parser.add_argument("--resume", action="store_true", help="keep points already in OUT/scale.json")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    for index in args.indexes:
        if index not in INDEXES:
            parser.error(f"--indexes: {index!r} is not one of {INDEXES}")
    report = json.loads((args.out / "scale.json").read_text()) if args.report_only else run(args)
    plot(report, args.out / "scale.png")
    write_markdown(report, args.out / "scale.md")
    print((args.out / "scale.md").read_text())


if __name__ == "__main__":
    main()
