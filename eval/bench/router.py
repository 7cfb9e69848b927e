"""Latency of routing one query: `Router.route(vector, text)` with a 200-class head on 512-d vectors.

The router runs once per search on the vector the encoder already produced, so its cost adds to
every query. Budget: at most 1 ms at P95. Measured here with synthetic heads (random weights:
latency does not depend on what the weights say), FP32 and INT8, linear and with KB anchor
features, with and without the query text features (KB entity kinds and hashed n-grams of the
judged queries' texts, with the real KB name table), plus the trained head in data/intents when
it exists::

    uv run search-eval bench router [--classes 200] [--dim 512] [--calls 20000] [--runs 5]

Prints median, P95 and P99 in microseconds per configuration (all runs pooled) and each run's
P95, so a noisy run is visible. Benchmarks print figures; they are not assertions in the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from eval.bench.stats import percentile
from retrieval.documents import read_jsonl
from retrieval.routing.classifier import DenseLayer, IntentClassifier, KindAnchors
from retrieval.routing.features import QueryFeatures
from retrieval.routing.router import Router, load_router, parse_routing_table
from retrieval.settings import PROJECT_ROOT
from retrieval.training.intents.dataset import kb_names, read_texts

KB_KINDS = ("character", "location", "faction", "item", "technique", "event", "lore", "chapter")


def synthetic_router(
    classes: int,
    dim: int,
    anchors: int,
    precision: str,
    seed: int = 0,
    features: QueryFeatures | None = None,
) -> Router:
    """A router over a random head with `classes` intents, each with a kind boost and weights."""
    rng = np.random.default_rng(seed)
    labels = [f"intent_{i:03d}" for i in range(classes)]
    kb_anchors = None
    in_dim = dim
    if anchors:
        names = rng.normal(size=(anchors, dim)).astype(np.float32)
        names /= np.linalg.norm(names, axis=1, keepdims=True)
        kb_anchors = KindAnchors.build(names, [KB_KINDS[i % len(KB_KINDS)] for i in range(anchors)])
        in_dim = dim + len(kb_anchors.kinds)
    if features is not None:
        in_dim += features.dim
    layer = DenseLayer(
        (rng.normal(size=(classes, in_dim)) / np.sqrt(in_dim)).astype(np.float32),
        rng.normal(size=classes).astype(np.float32),
    )
    head = IntentClassifier([layer], labels, "bench", anchors=kb_anchors, features=features)
    if precision == "int8":
        head = head.quantized()
    table = parse_routing_table(
        {
            "routing": {"threshold": 0.0},
            "intents": {
                label: {
                    "boost": {KB_KINDS[i % len(KB_KINDS)]: 1.1},
                    "dense_weight": 1.0,
                    "sparse_weight": 1.2,
                }
                for i, label in enumerate(labels)
            },
        }
    )
    return Router(table, head)


def time_calls(
    call: Callable[[np.ndarray, str], object], vectors: np.ndarray, texts: Sequence[str]
) -> np.ndarray:
    """Wall time of each call in microseconds (GC off while timing, as it would only add noise)."""
    out = np.empty(len(vectors))
    for i, v in enumerate(vectors[:200]):  # warm-up: first calls pay for caches and allocations
        call(v, texts[i % len(texts)])
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i, v in enumerate(vectors):
            text = texts[i % len(texts)]
            t0 = time.perf_counter_ns()
            call(v, text)
            out[i] = (time.perf_counter_ns() - t0) / 1000
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def queries(count: int, dim: int, seed: int) -> np.ndarray:
    """L2-normalised random query vectors, like encoder output."""
    v = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    normalised: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return normalised


def bench(
    name: str, router: Router, dim: int, calls: int, runs: int, texts: Sequence[str]
) -> dict[str, float]:
    """Print and return pooled median/P95/P99 (µs) over `runs` runs of `calls` route() calls."""
    samples = []
    per_run = []
    for run in range(runs):
        t = time_calls(lambda v, text: router.route(v, text), queries(calls, dim, seed=100 + run), texts)
        samples.append(t)
        per_run.append(percentile(list(t), 95))
    pooled = np.concatenate(samples).tolist()
    figures = {
        "median_us": percentile(pooled, 50),
        "p95_us": percentile(pooled, 95),
        "p99_us": percentile(pooled, 99),
    }
    print(
        f"{name:42s} median {figures['median_us']:7.1f} µs  P95 {figures['p95_us']:7.1f} µs  "
        f"P99 {figures['p99_us']:7.1f} µs   per-run P95 {', '.join(f'{p:.1f}' for p in per_run)}",
        flush=True,
    )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Run every configuration and report whether the P95 budget holds."""
    parser = argparse.ArgumentParser(prog="bench_router", description=__doc__)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--anchors", type=int, default=928, help="KB names in the anchor variant (the KB has 928)"
    )
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget-us", type=float, default=1000.0)
    parser.add_argument(
        "--buckets", type=int, default=2048, help="hashed n-gram buckets of the text features"
    )
    args = parser.parse_args(argv)
    if min(args.classes, args.dim, args.calls, args.runs) < 1 or args.anchors < 0:
        print("bench_router: sizes must be positive", file=sys.stderr)
        return 2

    # Real query texts and the real KB name table: the text features' cost depends on both.
    texts = read_texts(PROJECT_ROOT / "fixtures" / "queries.jsonl")
    names, kinds = kb_names(list(read_jsonl(PROJECT_ROOT / "fixtures" / "kb.jsonl")))
    features = QueryFeatures.from_names(names, kinds, buckets=args.buckets)
    print(
        f"Router.route(vector, text): {args.classes} intents, {args.dim}-d vectors, "
        f"{args.runs} x {args.calls} calls, {len(texts)} query texts cycled"
    )
    results: dict[str, dict[str, float]] = {}
    for anchors in (0, args.anchors):
        for text_features in (None, features):
            for precision in ("fp32", "int8"):
                label = f"synthetic {args.classes} classes {precision}" + (
                    f" + {anchors} anchors" if anchors else ""
                )
                if text_features is not None:
                    label += f" + text ({text_features.dim})"
                router = synthetic_router(args.classes, args.dim, anchors, precision, features=text_features)
                results[label] = bench(label, router, args.dim, args.calls, args.runs, texts)

    trained = PROJECT_ROOT / "data" / "intents"
    if (trained / "meta.json").exists():
        model_id = json.loads((trained / "meta.json").read_text(encoding="utf-8"))["embedding_model_id"]
        for precision in ("fp32", "int8"):
            router = load_router(
                PROJECT_ROOT / "config" / "routing.toml",
                model_id=model_id,
                base_dir=PROJECT_ROOT / "data",
                precision=precision,  # type: ignore[arg-type]
            )
            if router.classifier is not None:
                label = f"trained head ({len(router.classifier.labels)} intents) {precision}"
                results[label] = bench(label, router, router.classifier.dim, args.calls, args.runs, texts)
    else:
        print(f"(no trained head in {Path(trained).relative_to(PROJECT_ROOT)}; skipped)")

    worst = max(r["p95_us"] for r in results.values())
    verdict = "within" if worst <= args.budget_us else "OVER"
    print(f"worst P95 {worst:.1f} µs: {verdict} the {args.budget_us:.0f} µs budget")
    return 0 if worst <= args.budget_us else 1


if __name__ == "__main__":
    sys.exit(main())
