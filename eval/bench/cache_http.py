"""Semantic cache over HTTP: hit rate, wrong-hit rate, and latency of hits and misses.

    uv run search-eval bench cache_http --stream 1200 --thresholds 0.90,0.93,0.95,0.97 --redis

A stream of fixture-based queries is replayed, one request at a time, against `search-api serve`
(real model, fixtures, the cache in the real Redis when `--redis`, else in-process). The stream
mixes exact repeats, surface variants (spacing, punctuation), paraphrases (question reworded,
polite prefixes) and near-misses (another entity of the same kind, a negation, another number),
drawn with a Zipf-like popularity so some queries recur often.

A hit is *wrong* when its top-10 documents differ from what the same query returns with the cache
bypassed (`"cache": false`, measured right after, untimed). Each threshold gets a fresh server and
an empty cache, so runs do not share entries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from eval.bench.stats import percentile
from eval.server import running_server
from retrieval.documents import read_jsonl
from retrieval.settings import PROJECT_ROOT

QUERIES = PROJECT_ROOT / "fixtures" / "queries.jsonl"
KB = PROJECT_ROOT / "fixtures" / "kb.jsonl"
_NUMBERS = re.compile(r"[0-9一二三四五六七八九十百千]+")


@dataclass(frozen=True)
class StreamItem:
    """One query of the replay and how it was made."""

    text: str
    kind: str  # original | repeat | surface | paraphrase | near_entity | near_negation | near_number


def _paraphrase(text: str, rng: random.Random) -> str:
    core = text.rstrip("？?。！! ")
    rules = [
        lambda t: "请问" + t,
        lambda t: "我想知道" + t,
        lambda t: t + "呢",
        lambda t: "谁是" + t[:-2] if t.endswith("是谁") else "请问一下，" + t,
        lambda t: t.replace("在哪里", "在什么地方") if "在哪里" in t else "麻烦告诉我" + t,
        lambda t: t.replace("是什么", "指的是什么") if "是什么" in t else t + "？",
    ]
    return str(rng.choice(rules)(core))


def _near_misses(text: str, names: list[str], rng: random.Random) -> list[StreamItem]:
    found = [n for n in names if n in text]
    items = []
    if found:
        name = max(found, key=len)
        # Prefer a name that differs by one character: the case novels make hard.
        close = [
            n
            for n in names
            if len(n) == len(name) and n != name and sum(a != b for a, b in zip(n, name, strict=True)) == 1
        ]
        other = rng.choice(close or [n for n in names if n != name])
        items.append(StreamItem(text.replace(name, other, 1), "near_entity"))
    if "是" in text:
        items.append(StreamItem(text.replace("是", "不是", 1), "near_negation"))
    elif "会" in text:
        items.append(StreamItem(text.replace("会", "不会", 1), "near_negation"))
    if (m := _NUMBERS.search(text)) is not None:
        replacement = "七" if m.group() != "七" else "九"
        items.append(StreamItem(text[: m.start()] + replacement + text[m.end() :], "near_number"))
    return items


def build_stream(n: int, seed: int = 5) -> list[StreamItem]:
    """`n` queries: originals, repeats, surface variants, paraphrases, near-misses."""
    rng = random.Random(seed)
    base = [
        json.loads(line)["text"] for line in QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    names = sorted({x for d in read_jsonl(KB) for x in (d.title, *d.aliases) if len(x) >= 2 and " " not in x})
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(base))]
    rng.shuffle(base)
    stream: list[StreamItem] = []
    seen: set[str] = set()
    while len(stream) < n:
        text = rng.choices(base, weights=weights, k=1)[0]
        if text not in seen:
            seen.add(text)
            stream.append(StreamItem(text, "original"))
            continue
        roll = rng.random()
        if roll < 0.35:
            stream.append(StreamItem(text, "repeat"))
        elif roll < 0.5:
            stream.append(StreamItem(" " + text.rstrip("？?") + " ？", "surface"))
        elif roll < 0.75:
            stream.append(StreamItem(_paraphrase(text, rng), "paraphrase"))
        else:
            misses = _near_misses(text, names, rng)
            stream.append(rng.choice(misses) if misses else StreamItem(text, "repeat"))
    return stream[:n]


def _pct(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 2) if values else None


async def replay(
    data_dir: Path, stream: list[StreamItem], threshold: float, redis_url: str
) -> dict[str, Any]:
    """One server, one threshold, the whole stream."""
    prefix = f"bench:cache:{uuid.uuid4().hex[:8]}:"
    env = {
        "SEARCH_CACHE_SEMANTIC_THRESHOLD": str(threshold),
        "SEARCH_CACHE_KEY_PREFIX": prefix,
        "REDIS_URL": redis_url,
    }
    latency: dict[str, list[float]] = {"hit": [], "miss": []}
    by_kind: dict[str, dict[str, int]] = {}
    wrong: list[dict[str, Any]] = []
    tiers = {"exact": 0, "semantic": 0}
    async with (
        running_server(data_dir, env) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        for item in stream:
            t0 = time.perf_counter()
            response = await client.post("/v1/search", json={"query": item.text, "top_k": 10})
            elapsed = (time.perf_counter() - t0) * 1000
            body = response.json()
            hit = bool(body["cache"]["hit"])
            latency["hit" if hit else "miss"].append(elapsed)
            stats = by_kind.setdefault(item.kind, {"n": 0, "hits": 0, "wrong": 0})
            stats["n"] += 1
            if hit:
                stats["hits"] += 1
                tiers[body["cache"]["tier"]] += 1
                uncached = {"query": item.text, "top_k": 10, "cache": False}
                fresh = (await client.post("/v1/search", json=uncached)).json()
                if [h["doc_id"] for h in fresh["hits"]] != [h["doc_id"] for h in body["hits"]]:
                    stats["wrong"] += 1
                    wrong.append({"query": item.text, "kind": item.kind, "tier": body["cache"]["tier"]})
            await asyncio.sleep(0.002)  # let the off-path cache write land, as between real requests
    hits = sum(s["hits"] for s in by_kind.values())
    return {
        "threshold": threshold,
        "queries": len(stream),
        "hit_rate": round(hits / len(stream), 4),
        "tiers": tiers,
        "wrong_hits": len(wrong),
        "wrong_hit_rate": round(len(wrong) / max(hits, 1), 4),
        "hit_ms": {
            "p50": _pct(latency["hit"], 50),
            "p95": _pct(latency["hit"], 95),
            "n": len(latency["hit"]),
        },
        "miss_ms": {
            "p50": _pct(latency["miss"], 50),
            "p95": _pct(latency["miss"], 95),
            "n": len(latency["miss"]),
        },
        "by_kind": by_kind,
        "wrong_examples": wrong[:10],
    }


def _median_of_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over replays of the rates and of each run's percentiles (the machine is noisy)."""

    def median(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(float(np.median(present)), 4) if present else None

    return {
        "runs": len(runs),
        "hit_rate": median([r["hit_rate"] for r in runs]),
        "wrong_hit_rate": median([r["wrong_hit_rate"] for r in runs]),
        **{
            f"{side}_{q}": median([r[f"{side}_ms"][q] for r in runs])
            for side in ("hit", "miss")
            for q in ("p50", "p95")
        },
        "hit_p95_each_run": [r["hit_ms"]["p95"] for r in runs],
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Replay the stream once per threshold and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stream", type=int, default=1200)
    parser.add_argument("--thresholds", default="0.90,0.93,0.95,0.97")
    parser.add_argument(
        "--redis", action="store_true", help="use the Redis at REDIS_URL (default 127.0.0.1:6379)"
    )
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data" / "bench-cache")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--runs", type=int, default=1, help="replays per threshold (fresh server each); medians reported"
    )
    args = parser.parse_args(argv)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0") if args.redis else ""
    stream = build_stream(args.stream)
    kinds: dict[str, int] = {}
    for item in stream:
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
    print(f"stream: {len(stream)} queries {kinds}", flush=True)
    results = []
    for threshold in (float(t) for t in args.thresholds.split(",")):
        runs = []
        for _ in range(args.runs):
            result = asyncio.run(replay(args.data_dir, stream, threshold, redis_url))
            runs.append(result)
            print(
                json.dumps({k: v for k, v in result.items() if k != "wrong_examples"}, ensure_ascii=False),
                flush=True,
            )
        summary = _median_of_runs(runs)
        results.append({**runs[0], "runs": runs, "median": summary})
        print(json.dumps({"threshold": threshold, "median_of_runs": summary}), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"stream": kinds, "results": results}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
