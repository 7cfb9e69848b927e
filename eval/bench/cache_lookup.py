"""Query-cache lookup latency at scale: N cached query vectors (default 50k x 512) in one partition.

    uv run search-eval bench cache_lookup [--entries 50000] [--dim 512] [--lookups 300]
                                             [--redis-url redis://host:6379/0]

Without --redis-url it starts a private redis-server (no persistence) on a free port and stops it
at the end; with one, it writes under a unique key prefix and deletes those keys afterwards.
Prints fill and replay times and median/P95 per lookup kind. All entries share one partition
(same filters, mode, route), the worst case for the semantic scan.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import redis

from retrieval.cache.config import CacheConfig
from retrieval.cache.memory import MemoryCache
from retrieval.cache.protocol import CacheItem, CacheKey
from retrieval.cache.redis_cache import RedisCache


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """The given URL, or a private redis-server started for the run."""
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH; pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def near(vector: npt.NDArray[np.float32], cosine: float, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A unit vector at exactly `cosine` from unit `vector` (a constructed paraphrase)."""
    other = np.asarray(rng.standard_normal(vector.shape[0]), dtype=np.float64)
    other -= float(other.dot(vector)) * vector
    other /= np.linalg.norm(other)
    mixed: npt.NDArray[np.float64] = cosine * vector + float(np.sqrt(1 - cosine**2)) * other
    return mixed.astype(np.float32)


async def timed(samples: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Milliseconds per call, after a short warm-up."""
    for i in range(5):
        await call(i)
    times = []
    for i in range(samples):
        started = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(label: str, times_ms: list[float]) -> None:
    ordered = sorted(times_ms)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(f"  {label:<44} median {statistics.median(ordered):7.3f} ms   p95 {p95:7.3f} ms")


async def run(args: argparse.Namespace) -> None:
    """Fill both backends with the same vectors and time each kind of lookup."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.entries, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    targets = [int(t) for t in rng.choice(args.entries, size=args.lookups + 5, replace=True)]
    paraphrases = [near(vectors[t], 0.97, rng) for t in targets]
    strangers = rng.standard_normal((args.lookups + 5, args.dim)).astype(np.float32)

    def items() -> Iterator[CacheItem]:
        for i in range(args.entries):
            yield CacheItem(CacheKey(f"问题{i}"), vectors[i], frozenset(), b"x" * 2048, 50.0)

    print(f"{args.entries} cached queries, dim {args.dim}, one partition, {args.lookups} lookups each")
    # Wall-clock latencies mean little on a loaded host; print the context with the figures.
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    report(
        "raw numpy BLAS scan (matrix @ vector)",
        await timed(args.lookups, lambda i: _scan(vectors, paraphrases[i])),
    )
    await bench_memory(args, items(), targets, paraphrases, strangers)
    with redis_server(args.redis_url) as url:
        await bench_redis(args, url, items(), targets, paraphrases, strangers)


async def bench_memory(
    args: argparse.Namespace,
    items: Iterator[CacheItem],
    targets: list[int],
    paraphrases: list[npt.NDArray[np.float32]],
    strangers: npt.NDArray[np.float32],
) -> None:
    """The in-process cache: fill, then semantic hits and misses."""
    memory = MemoryCache(CacheConfig(max_entries=args.entries + 1))
    started = time.perf_counter()
    await memory.put_many(items)
    print(f"memory: fill {time.perf_counter() - started:.2f} s")

    async def hit(i: int) -> None:
        key = CacheKey(f"问题{targets[i]}的另一种问法")
        if not (await memory.get_semantic(key, paraphrases[i], set())).is_hit:
            raise RuntimeError("expected a semantic hit")

    report("memory get_semantic (hit)", await timed(args.lookups, hit))
    report(
        "memory get_semantic (miss)",
        await timed(args.lookups, lambda i: memory.get_semantic(CacheKey("无关的问题"), strangers[i], set())),
    )


async def bench_redis(
    args: argparse.Namespace,
    url: str,
    items: Iterator[CacheItem],
    targets: list[int],
    paraphrases: list[npt.NDArray[np.float32]],
    strangers: npt.NDArray[np.float32],
) -> None:
    """Two workers on one Redis: one fills, the other replays the stream and serves lookups."""
    prefix = f"bench:cache:{uuid.uuid4().hex[:8]}:"
    settings = CacheConfig(redis_url=url, key_prefix=prefix, eviction_policy="", max_entries=args.entries + 1)
    writer, reader = RedisCache(settings), RedisCache(settings)
    try:
        await writer.start()
        started = time.perf_counter()
        stored = await writer.put_many(items)
        print(f"redis: fill {stored} entries with pipelines {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        await reader.start()
        replayed = (await reader.status())["semantic_entries"]
        print(f"redis: a new worker replays {replayed} vectors {time.perf_counter() - started:.2f} s")

        hits = 0

        async def semantic_hit(i: int) -> float:
            nonlocal hits
            key = CacheKey(f"问题{targets[i]}的另一种问法")
            await reader.get_exact(key)  # as in a search: exact first, then the encoder, then this
            t0 = time.perf_counter()
            hits += (await reader.get_semantic(key, paraphrases[i], set())).is_hit
            return (time.perf_counter() - t0) * 1000

        report(
            "redis get_exact (hit, one round trip)",
            await timed(args.lookups, lambda i: reader.get_exact(CacheKey(f"问题{targets[i]}"))),
        )
        report(
            "redis get_exact (miss, one round trip)",
            await timed(args.lookups, lambda i: reader.get_exact(CacheKey(f"未缓存{i}"))),
        )
        report(
            "redis get_semantic (hit: scan + one round trip)",
            [await semantic_hit(i) for i in range(args.lookups)],
        )
        print(f"  semantic hits {hits}/{args.lookups} (a miss here is a Redis timeout turned into a miss)")
        report(
            "redis get_semantic (miss: scan only)",
            await timed(
                args.lookups, lambda i: reader.get_semantic(CacheKey("无关的问题"), strangers[i], set())
            ),
        )
        metrics = reader.metrics()
        skipped = metrics["short_circuited"]
        print(f"redis reader: errors {metrics['errors']}, calls short-circuited by the breaker {skipped}")
    finally:
        await writer.close()
        await reader.close()
        client = redis.Redis.from_url(url)
        for batch in _batches(client.scan_iter(match=f"{prefix}*", count=1000), 1000):
            client.unlink(*batch)
        client.close()


async def _scan(matrix: npt.NDArray[np.float32], vector: npt.NDArray[np.float32]) -> int:
    return int(np.argmax(matrix @ vector))


def _batches(keys: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--redis-url", default=None)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
