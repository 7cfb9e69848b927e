"""Query cache over HTTP: what each tier serves, how often a served answer is wrong or harmful, latency.

    uv run search-eval bench cache_http --stream 2000 --seed 1 --redis \\
        --verify-thresholds 0.85,0.9 --overlaps 0.5,0.7

A stream of judged fixture queries and their variants (`eval.bench.cache_stream`) is replayed, one
request at a time, against `search-api serve` (real model, fixtures, the cache in the real Redis
when `--redis`, else in-process). Each configuration (trusted threshold, verified-band threshold,
evidence overlap, canonical tier on or off) gets a fresh server and an empty cache.

Two wrong-hit measures, both against the same query sent right after with `"cache": false`
(untimed):

- *strict*: the served top 10 differs in any position from the uncached top 10.
- *harmful* (judged items only; every item but a near-miss words a judged query): the served
  answer's nDCG@10 against that query's judgements is more than 0.05 below the uncached
  answer's, or the served first hit is not relevant while the uncached first hit is.

A near-miss is unique in the stream and never a judged wording, so any hit on one is another
question's answer ("near-misses served"). Misses are reported as misses, per kind and family.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from eval.bench.cache_stream import StreamItem, build_stream, read_judgements
from eval.bench.stats import percentile
from eval.server import running_server
from retrieval.settings import PROJECT_ROOT

HARM_MARGIN = 0.05
TOP = 10


@dataclass(frozen=True)
class CacheSetup:
    """One configuration of the replay: the cache settings the server starts with."""

    trusted: float
    verify: float
    overlap: float
    canonical: bool

    @property
    def name(self) -> str:
        band = f"verify {self.verify}/{self.overlap}" if self.verify < self.trusted else "no band"
        return f"trusted {self.trusted}, {band}, canonical {'on' if self.canonical else 'off'}"

    def env(self) -> dict[str, str]:
        return {
            "SEARCH_CACHE_SEMANTIC_THRESHOLD": str(self.trusted),
            "SEARCH_CACHE_VERIFY_THRESHOLD": str(self.verify),
            "SEARCH_CACHE_VERIFY_MIN_OVERLAP": str(self.overlap),
            "SEARCH_CACHE_CANONICAL": "true" if self.canonical else "false",
        }


def ndcg_at(docs: Sequence[str], judgements: Mapping[str, int], k: int = TOP) -> float:
    """nDCG@k with linear gains (the grade), first hit per document counted, others skipped."""
    ranked = list(dict.fromkeys(docs))[:k]
    dcg = sum(judgements.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked))
    ideal = sorted(judgements.values(), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def is_harmful(served: Sequence[str], uncached: Sequence[str], judgements: Mapping[str, int]) -> bool:
    """Whether serving `served` instead of `uncached` hurts the query with these judgements."""
    if ndcg_at(served, judgements) < ndcg_at(uncached, judgements) - HARM_MARGIN:
        return True
    first_relevant = bool(served) and judgements.get(served[0], 0) > 0
    uncached_first_relevant = bool(uncached) and judgements.get(uncached[0], 0) > 0
    return uncached_first_relevant and not first_relevant


def _pct(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 2) if values else None


def _latency(values: list[float]) -> dict[str, Any]:
    return {"p50": _pct(values, 50), "p95": _pct(values, 95), "n": len(values)}


async def replay(
    data_dir: Path, stream: list[StreamItem], setup: CacheSetup, redis_url: str
) -> dict[str, Any]:
    """One server, one configuration, the whole stream."""
    judgements = read_judgements()
    prefix = f"bench:cache:{uuid.uuid4().hex[:8]}:"
    env = {**setup.env(), "SEARCH_CACHE_KEY_PREFIX": prefix, "REDIS_URL": redis_url}
    latency: dict[str, list[float]] = {"hit": [], "miss": [], "exact": [], "canonical": [], "semantic": []}
    by_kind: dict[str, dict[str, Any]] = {}
    by_family: dict[str, dict[str, Any]] = {}
    examples: dict[str, list[dict[str, Any]]] = {"harmful": [], "strict": [], "near_miss_served": []}
    async with (
        running_server(data_dir, env) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        for item in stream:
            t0 = time.perf_counter()
            response = await client.post("/v1/search", json={"query": item.text, "top_k": TOP})
            elapsed = (time.perf_counter() - t0) * 1000
            body = response.json()
            tier = body["cache"]["tier"] if body["cache"]["hit"] else None
            latency["hit" if tier else "miss"].append(elapsed)
            groups = [
                by_kind.setdefault(item.kind, {}),
                by_family.setdefault(f"{item.kind}/{item.family}", {}),
            ]
            for stats in groups:
                stats["n"] = stats.get("n", 0) + 1
            if tier is None:
                await asyncio.sleep(0.002)  # let the off-path cache write land, as between real requests
                continue
            latency[tier].append(elapsed)
            served = [h["doc_id"] for h in body["hits"]]
            uncached_body = (
                await client.post("/v1/search", json={"query": item.text, "top_k": TOP, "cache": False})
            ).json()
            uncached = [h["doc_id"] for h in uncached_body["hits"]]
            strict = served != uncached
            harmful = item.qid is not None and is_harmful(served, uncached, judgements.get(item.qid, {}))
            for stats in groups:
                stats["hits"] = stats.get("hits", 0) + 1
                stats[tier] = stats.get(tier, 0) + 1
                stats["strict_wrong"] = stats.get("strict_wrong", 0) + strict
                stats["harmful"] = stats.get("harmful", 0) + harmful
            record = {"query": item.text, "kind": item.kind, "family": item.family, "tier": tier}
            if item.qid is None:
                examples["near_miss_served"].append(record)
            if harmful:
                examples["harmful"].append(record)
            if strict:
                examples["strict"].append(record)
    hits = len(latency["hit"])
    judged_hits = sum(s.get("hits", 0) for k, s in by_kind.items() if not k.startswith("near_"))
    return {
        "setup": setup.name,
        "settings": setup.env(),
        "queries": len(stream),
        "hit_rate": round(hits / len(stream), 4),
        "tiers": {t: len(latency[t]) for t in ("exact", "canonical", "semantic")},
        "strict_wrong_rate": round(len(examples["strict"]) / max(hits, 1), 4),
        "harmful_rate": round(len(examples["harmful"]) / max(judged_hits, 1), 4),
        "harmful": len(examples["harmful"]),
        "near_misses_served": len(examples["near_miss_served"]),
        "served_share": {
            kind: round(by_kind.get(kind, {}).get("hits", 0) / by_kind[kind]["n"], 4)
            for kind in ("repeat", "surface", "paraphrase")
            if kind in by_kind
        },
        "latency_ms": {name: _latency(values) for name, values in latency.items()},
        "by_kind": by_kind,
        "by_family": by_family,
        "examples": {name: rows[:15] for name, rows in examples.items()},
    }


def _median_of_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over replays of the rates and of each run's percentiles (the machine is noisy)."""

    def median(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(float(np.median(present)), 4) if present else None

    return {
        "runs": len(runs),
        "hit_rate": median([r["hit_rate"] for r in runs]),
        "harmful_rate": median([r["harmful_rate"] for r in runs]),
        "strict_wrong_rate": median([r["strict_wrong_rate"] for r in runs]),
        **{
            f"{side}_{q}": median([r["latency_ms"][side][q] for r in runs])
            for side in ("hit", "miss", "exact", "canonical", "semantic")
            for q in ("p50", "p95")
        },
        "hit_p95_each_run": [r["latency_ms"]["hit"]["p95"] for r in runs],
    }


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """Replay the stream once per configuration (times `--runs`) and print one JSON line each."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stream", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1, help="stream seed (tune on one, report on another)")
    parser.add_argument("--thresholds", default="0.999", help="trusted semantic thresholds (no evidence)")
    parser.add_argument(
        "--verify-thresholds", default="", help="verified-band thresholds ('' or >= trusted: no band)"
    )
    parser.add_argument("--overlaps", default="0.5", help="evidence overlaps the band asks for")
    parser.add_argument("--canonical", choices=("on", "off", "both"), default="on")
    parser.add_argument(
        "--redis", action="store_true", help="use the Redis at REDIS_URL (default 127.0.0.1:6379)"
    )
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data" / "bench-cache")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=1, help="replays per configuration (fresh server each)")
    args = parser.parse_args(argv)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0") if args.redis else ""
    stream = build_stream(args.stream, seed=args.seed)
    kinds: dict[str, int] = {}
    for item in stream:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    print(f"stream: {len(stream)} queries, seed {args.seed}: {kinds}", flush=True)
    canonical = {"on": [True], "off": [False], "both": [False, True]}[args.canonical]
    setups: list[CacheSetup] = []
    for trusted, use_canonical in itertools.product(_floats(args.thresholds), canonical):
        bands = [v for v in _floats(args.verify_thresholds) if v < trusted]
        setups.extend(
            CacheSetup(trusted, verify, overlap, use_canonical)
            for verify, overlap in itertools.product(bands, _floats(args.overlaps))
        )
        if not bands:
            setups.append(CacheSetup(trusted, trusted, 0.5, use_canonical))
    results = []
    for setup in setups:
        runs = []
        for _ in range(args.runs):
            result = asyncio.run(replay(args.data_dir, stream, setup, redis_url))
            runs.append(result)
            brief = {k: v for k, v in result.items() if k not in ("examples", "by_family", "by_kind")}
            print(json.dumps(brief, ensure_ascii=False), flush=True)
        summary = _median_of_runs(runs)
        results.append({**runs[0], "runs": runs, "median": summary})
        print(json.dumps({"setup": setup.name, "median_of_runs": summary}, ensure_ascii=False), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"stream": kinds, "seed": args.seed, "results": results}
        args.out.write_text(json.dumps(payload, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
