"""Latency of the learned ranking stage for one query: features, LightGBM scoring, order, explanation.

What `SearchService` adds under fusion "learned" after retrieval: `LearnedRanker.rank` over the
fused candidates (feature matrix, one `Booster.predict` on one thread, sort) and `explain` for the
page of 10 (path attributions, `retrieval.ranking.attribution`). Candidates are real fixture
entries (text, title, aliases) with the fixture queries' texts, in dense and sparse lists of
`--candidates` each that overlap by half (so the union is about 1.5 x that), with retriever-like
scores::

    uv run search-eval bench ranker [--model-id ID] [--candidates 100] [--calls 2000] [--runs 5]

Budget: at most 3 ms at P95 for 100 candidates. Prints median and P95 (all runs pooled) and each
run's P95. Benchmarks print figures; they are not assertions in the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eval.bench.stats import percentile
from retrieval.documents import read_jsonl
from retrieval.encoders.registry import DEFAULT_MODEL_ID
from retrieval.engine import SHIPPED_RANKERS
from retrieval.fusion import WeightedRRF
from retrieval.ranking.features import RankingInput
from retrieval.ranking.ranker import LearnedRanker
from retrieval.settings import PROJECT_ROOT
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.types import StoredHit


def workload(candidates: int, seed: int) -> list[tuple[RankingInput, dict[str, list[StoredHit]]]]:
    """Per fixture query: its ranking input and dense/sparse lists of `candidates` fixture chunks."""
    rng = random.Random(seed)
    docs = list(read_jsonl(PROJECT_ROOT / "fixtures" / "kb.jsonl"))
    lines = (PROJECT_ROOT / "fixtures" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [str(json.loads(line)["text"]) for line in lines if line.strip()]
    tokenizer = JiebaTokenizer([d.title for d in docs])
    hits = [
        StoredHit(f"{d.id}#0", 0.0, d.id, d.title, d.kind, d.text[:400], 0, {"aliases": list(d.aliases)})
        for d in docs
    ]
    out = []
    for text in texts:
        terms = tokenizer.tokenize(text)
        pool = rng.sample(hits, candidates + candidates // 2)
        lists = {"dense": pool[:candidates], "sparse": pool[candidates // 2 :]}
        ranked = {
            source: [
                StoredHit(h.id, top - 0.004 * r * top, h.doc_id, h.title, h.kind, h.text, 0, h.metadata)
                for r, h in enumerate(chosen)
            ]
            for (source, chosen), top in zip(lists.items(), (0.9, 25.0), strict=True)
        }
        out.append((RankingInput(text, terms, {t: rng.uniform(0.5, 8.0) for t in terms}, candidates), ranked))
    return out


def time_stage(
    ranker: LearnedRanker, work: Sequence[tuple[RankingInput, dict[str, list[StoredHit]]]], calls: int
) -> list[float]:
    """Milliseconds per call of rank + explain(page of 10), RRF fusion excluded (it is served either way)."""
    fuser = WeightedRRF()
    fused = [(q, fuser.fuse(r), r) for q, r in work]
    for q, f, r in fused[:50]:  # warm-up
        ranker.explain(ranker.rank(q, f, r), 0, 10)
    out = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(calls):
            q, f, r = fused[i % len(fused)]
            t0 = time.perf_counter_ns()
            ranker.explain(ranker.rank(q, f, r), 0, 10)
            out.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Time the stage and report whether the P95 budget holds."""
    parser = argparse.ArgumentParser(prog="bench_ranker", description=__doc__)
    parser.add_argument("--model-id", default=DEFAULT_MODEL_ID, help="shipped ranker (fixtures/ranking/<id>)")
    parser.add_argument("--ranker", default=None, help="a ranker folder instead of the shipped one")
    parser.add_argument("--candidates", type=int, default=100, help="per-retriever list length")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget-ms", type=float, default=3.0)
    args = parser.parse_args(argv)
    folder = SHIPPED_RANKERS / args.model_id if args.ranker is None else Path(args.ranker)
    ranker = LearnedRanker.load(folder)
    work = workload(args.candidates, seed=0)
    union = np.mean([len(WeightedRRF().fuse(r)) for _, r in work])
    print(
        f"ranking stage ({folder.name}, {ranker.describe()['digest']}): {len(work)} fixture queries, "
        f"{args.candidates} per retriever, union {union:.0f} candidates, {args.runs} x {args.calls} calls"
    )
    pooled: list[float] = []
    per_run = []
    for _ in range(args.runs):
        times = time_stage(ranker, work, args.calls)
        pooled += times
        per_run.append(percentile(times, 95))
    median, p95 = percentile(pooled, 50), percentile(pooled, 95)
    print(f"median {median:.3f} ms  P95 {p95:.3f} ms  per-run P95 {', '.join(f'{p:.3f}' for p in per_run)}")
    verdict = "within" if p95 <= args.budget_ms else "OVER"
    print(f"P95 {p95:.3f} ms: {verdict} the {args.budget_ms:.1f} ms budget")
    return 0 if p95 <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
