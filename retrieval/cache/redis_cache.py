"""The shared cache: entries in Redis, each worker's semantic matrix kept in step through a stream.

Keys (under `key_prefix`):

- `kb_version`: the knowledge-base version, advanced with INCRBY by whichever worker ingests.
- `e:<digest>`: one string per cached response, b'<kb_version>:<cost_ms>:' + payload, set with
  PX = TTL. The digest leaves the version out, so a put after an ingest overwrites the stale
  entry instead of leaving it to age out.
- `c:<canonical digest>`: the same string again under the query's canonical form, written in the
  same transaction. A copy rather than a pointer, so a canonical hit is one GET in one round trip
  like an exact hit (a pointer would need a second round trip or a script).
- `log`: a stream with one record per put that carries a vector: {m: JSON (entry id, partition,
  version, normalised query, entities, evidence, expiry), x: float32 vector}. Each worker tails it with
  XREAD from the last id it saw and appends the rows to its in-process `SemanticIndex`; XADD
  trims records older than the TTL (MINID), so a worker that starts late replays exactly the
  entries still alive. A worker a full batch behind catches up in a background task on a second
  connection pool with a lenient timeout, so request-path round trips stay small.

Why the version is read on every lookup instead of cached or pushed by pub/sub: the GET rides in
the same pipeline as the entry fetch, so it costs no extra round trip, and an ingest in any worker
is seen by every other worker on its very next lookup, with no window of staleness and no
subscriber connection to keep alive. An entry is served only if its stamped version equals the one read
in the same round trip. When the version key is missing (first start, Redis restarted without
persistence, or the key evicted) it is recreated from the wall clock in microseconds, a value no
earlier version can have reached, so entries of a forgotten version can never match again.

Why one module of over 500 lines: every lookup and put is a single pipelined round trip assembled
from the same private pieces (`_queue_version`, `_queue_put`, `_queue_stream_read`,
`_settle_version`, `_apply_stream`) around one connection, breaker and semantic matrix; apart,
they would have to share that private state across modules.

Every Redis call has a socket timeout and an overall deadline, and goes through a circuit
breaker; any failure turns a lookup into a miss and a put into a no-op, with a rate-limited
warning. A bump that cannot reach Redis is remembered and applied (INCRBY) by the next call that
can, and until then nothing is served, because no lookup succeeds without also applying it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Set
from typing import Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from retrieval.cache.config import CacheConfig
from retrieval.cache.guards import guard_signature
from retrieval.cache.metrics import CacheMetrics
from retrieval.cache.protocol import (
    CacheHit,
    CacheItem,
    CacheKey,
    CacheLookup,
    Evidence,
    EvidenceSource,
    GuardReason,
    QueryVector,
    Tier,
)
from retrieval.cache.semantic_index import SemanticIndex, Verification, unit_vector
from retrieval.util import BreakerState, CircuitBreaker, RateLimitedWarning

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# A lookup reuses the stream position synced this recently (normally by the request's own exact
# lookup a few milliseconds earlier) instead of paying a round trip to sync again.
_SYNC_REUSE_S = 0.1
# Candidates fetched per semantic lookup: the next ones stand in if the best was evicted.
_FETCH_CANDIDATES = 3
# Catching up on the stream (at start, or after falling a full batch behind) and bulk puts use a
# second connection pool with a lenient timeout: a 2000-record XREAD is about 4 MB at 512 dims,
# more than a request-path socket timeout of 50 ms allows, and none of it is on a request path.
_BULK_SOCKET_TIMEOUT_S = 2.0
_BULK_DEADLINE_S = 10.0
_CATCH_UP_BATCH = 2000
_CATCH_UP_BUDGET_S = 60.0
_PURGE_INTERVAL_S = 1.0
_BULK_CHUNK = 1000


def _first_after_version(flushed: int) -> int:
    """Index of the first reply after the version commands `_queue_version` queued."""
    return 2 if flushed else 1


def _pack_entry(version: int, cost_ms: float, payload: bytes) -> bytes:
    """An entry as one string: b'<kb_version>:<cost_ms>:' + payload (one SET, one GET, one TTL)."""
    return f"{version}:{float(cost_ms)!r}:".encode("ascii") + payload


def _unpack_entry(raw: bytes) -> tuple[int, float, bytes]:
    """Inverse of `_pack_entry`; raises ValueError on anything else."""
    version, cost, payload = raw.split(b":", 2)
    return int(version), float(cost), payload


def _fresh_version() -> int:
    """A version no earlier one can equal: wall-clock microseconds (far above any count of bumps)."""
    return time.time_ns() // 1000


def _stream_id(record_id: bytes) -> tuple[int, int]:
    millis, _, seq = record_id.partition(b"-")
    return int(millis), int(seq or 0)


def _stream_records(raw: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The records of a one-stream XREAD reply (RESP2 list or RESP3 dict form)."""
    if not raw:
        return []
    streams = raw.values() if isinstance(raw, dict) else (item[1] for item in raw)
    records: list[tuple[bytes, dict[bytes, bytes]]] = []
    for entries in streams:
        records.extend((record_id, fields) for record_id, fields in entries)
    return records


class RedisCache:
    """Exact, canonical and semantic query cache in Redis, shared by every API worker."""

    def __init__(
        self,
        config: CacheConfig,
        *,
        registry: CollectorRegistry | None = None,
        client: Redis | None = None,
    ):
        if not config.redis_url and client is None:
            raise ValueError("RedisCache needs config.redis_url or a client")
        self.config = config
        self._redis = client or self._connect(config.socket_timeout_s)
        self._bulk_redis = client or self._connect(max(config.socket_timeout_s, _BULK_SOCKET_TIMEOUT_S))
        self._owns_client = client is None
        prefix = config.key_prefix
        self._version_key = f"{prefix}kb_version"
        self._log_key = f"{prefix}log"
        self._entry_prefix = f"{prefix}e:"
        self._canonical_prefix = f"{prefix}c:"
        self._ttl_ms = max(1, round(config.ttl_s * 1000))
        self._deadline_s = config.socket_timeout_s * 3
        self._breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s, name="redis cache")
        self._warn = RateLimitedWarning(logger, config.warn_interval_s)
        self._index = SemanticIndex(max_rows=config.max_entries, offload_rows=config.offload_rows)
        self._last_id = b"0-0"
        self._catch_up_task: asyncio.Task[None] | None = None
        self._catching_up = False
        self._synced_at = -float("inf")
        self._last_purge = 0.0
        self._version = 0
        self._version_known = False
        self._pending_bumps = 0
        self._policy: dict[str, Any] = {
            "requested": config.eviction_policy or None,
            "applied": False,
            "error": None,
        }
        self._metrics = CacheMetrics("redis", registry, gauges=self._gauges)

    def _connect(self, socket_timeout_s: float) -> Redis:
        return Redis.from_url(
            self.config.redis_url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=self.config.socket_timeout_s,
            # No client-side retries: the breaker decides when to try again, and a retry would
            # multiply the time a lookup can take while Redis is down.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    @property
    def backend(self) -> str:
        """Always 'redis'."""
        return "redis"

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry the counters are exposed on."""
        return self._metrics.registry

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker guarding every Redis call."""
        return self._breaker

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Ask for LFU eviction, then replay the stream so the semantic tier starts warm. Never raises."""
        await self._request_eviction_policy()
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Replay the stream in large batches on the bulk connection until the end (or a failure).

        Lookups stop reading the stream meanwhile, so the two never race over the position.
        """
        if self._catching_up:
            return
        self._catching_up = True
        try:
            deadline = time.monotonic() + _CATCH_UP_BUDGET_S
            while time.monotonic() < deadline:
                read = await self._sync("catch_up", count=_CATCH_UP_BATCH, bulk=True)
                if read is None or read < _CATCH_UP_BATCH:
                    break
        finally:
            self._catching_up = False

    def _catch_up_in_background(self) -> None:
        if self._catching_up or (self._catch_up_task is not None and not self._catch_up_task.done()):
            return
        self._catch_up_task = asyncio.create_task(self._catch_up(), name="query-cache-catch-up")

    async def _request_eviction_policy(self) -> None:
        policy = self.config.eviction_policy
        if not policy or not self._breaker.allow():
            return
        try:
            async with asyncio.timeout(_BULK_DEADLINE_S):
                await self._bulk_redis.config_set("maxmemory-policy", policy)
        except ResponseError as exc:
            # Managed Redis services and ACLs commonly refuse CONFIG: the cache still works, but
            # eviction is whatever the server does, which the status reports.
            self._breaker.record_success()
            self._policy.update(applied=False, error=f"refused: {exc}")
            logger.warning("query cache: Redis refused maxmemory-policy %s (%s); continuing", policy, exc)
        except (RedisError, OSError, TimeoutError) as exc:
            self._breaker.record_failure()
            self._metrics.error("config")
            self._policy.update(applied=False, error=f"unreachable: {type(exc).__name__}: {exc}")
            self._warn("query cache: Redis unreachable at start (%s: %s)", type(exc).__name__, exc)
        except BaseException:
            self._breaker.abandon()
            raise
        else:
            self._breaker.record_success()
            self._policy.update(applied=True, error=None)

    async def close(self) -> None:
        """Stop a running catch-up and close the connection pools (only if this cache made them)."""
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
            await asyncio.gather(self._catch_up_task, return_exceptions=True)
        if self._owns_client:
            await self._redis.aclose()
            await self._bulk_redis.aclose()

    # -- lookups ---------------------------------------------------------------------------
    async def get_exact(self, key: CacheKey) -> CacheLookup:
        """One round trip: current version, the entry, and new stream records for the semantic tier."""
        return await self._get_entry("exact", self._entry_prefix + key.digest)

    async def get_canonical(self, key: CacheKey) -> CacheLookup:
        """Like `get_exact`, under the query's canonical form."""
        if not (self.config.canonical and key.canonical):
            self._metrics.miss("canonical")
            return CacheLookup(None, self._version + self._pending_bumps)
        return await self._get_entry("canonical", self._canonical_prefix + key.canonical_digest)

    async def _get_entry(self, tier: Tier, entry_key: str) -> CacheLookup:
        def commands(pipe: Pipeline) -> tuple[int, bool]:
            flushed = self._queue_version(pipe)
            pipe.get(entry_key)
            return flushed, self._queue_stream_read(pipe)

        got = await self._round_trip(f"get_{tier}", commands)
        if got is None:
            return self._degraded_miss(tier)
        (flushed, read_stream), replies = got
        first = _first_after_version(flushed)
        version = await self._settle_version(replies[first - 1], flushed)
        if read_stream:
            self._apply_stream(replies[first + 1])
        if version is None:
            return self._degraded_miss(tier)
        hit = self._as_hit(tier, replies[first], version, 1.0)
        if hit is None:
            self._metrics.miss(tier)
            return CacheLookup(None, version)
        self._metrics.hit(tier, hit.saved_ms)
        return CacheLookup(hit, version)

    async def get_semantic(
        self,
        key: CacheKey,
        vector: QueryVector,
        entities: Set[str],
        *,
        evidence: EvidenceSource | None = None,
    ) -> CacheLookup:
        """Scan the local matrix, then fetch the best guard-passing candidates with the version."""
        query = unit_vector(vector)
        stale = not self._catching_up and time.monotonic() - self._synced_at > _SYNC_REUSE_S
        if stale and await self._sync("get_semantic") is None:
            return self._degraded_miss("semantic")
        self._maybe_purge()
        match = await self._index.search(
            key.partition,
            query,
            guard_signature(key.query, entities),
            version=self._version,
            threshold=self.config.semantic_threshold,
            now=time.time(),
            limit=_FETCH_CANDIDATES,
            verification=Verification.of(self.config, evidence),
        )
        if not match.candidates:
            return self._semantic_miss(match.rejection)
        ids = [entry_id for entry_id, _ in match.candidates]

        def commands(pipe: Pipeline) -> tuple[int, bool]:
            flushed = self._queue_version(pipe)
            for entry_id in ids:
                pipe.get(self._entry_prefix + entry_id)
            return flushed, self._queue_stream_read(pipe)

        got = await self._round_trip("get_semantic", commands)
        if got is None:
            return self._degraded_miss("semantic")
        (flushed, read_stream), replies = got
        first = _first_after_version(flushed)
        version = await self._settle_version(replies[first - 1], flushed)
        # Stream first, candidates second: the batch usually holds older records of the same ids
        # (this worker's own puts), which must not bring back a row whose entry just proved gone.
        if read_stream:
            self._apply_stream(replies[first + len(ids)])
        if version is None:
            return self._degraded_miss("semantic")
        entries = replies[first : first + len(ids)]
        for (entry_id, similarity), raw in zip(match.candidates, entries, strict=True):
            hit = self._as_hit("semantic", raw, version, similarity)
            if hit is not None:
                self._metrics.hit("semantic", hit.saved_ms)
                return CacheLookup(hit, version)
            # Expired, evicted or overwritten since the stream announced it: forget the row.
            self._index.remove(entry_id)
        return self._semantic_miss(None)

    # -- writes ----------------------------------------------------------------------------
    async def put(
        self,
        key: CacheKey,
        vector: QueryVector | None,
        entities: Set[str],
        payload: bytes,
        cost_ms: float,
        *,
        kb_version: int | None = None,
        evidence: Evidence = (),
    ) -> bool:
        """Store the entry and, with a vector, announce it on the stream; one MULTI/EXEC round trip."""
        if kb_version is not None and self._version_known and kb_version < self._version:
            self._metrics.dropped_puts["stale_version"] += 1
            return False
        if len(payload) > self.config.max_payload_bytes:
            self._metrics.dropped_puts["too_large"] += 1
            return False
        unit = unit_vector(vector) if vector is not None else None
        # Stamped with the version the caller's lookup saw, never a later one: a response computed
        # before an ingest must not pass for current (readers compare the stamp with the live version).
        version = kb_version if kb_version is not None else self._version
        expires_at = time.time() + self.config.ttl_s
        signature = guard_signature(key.query, entities) if unit is not None else None

        def commands(pipe: Pipeline) -> int:
            flushed = self._queue_version(pipe) if self._pending_bumps else 0
            self._queue_put(pipe, key, unit, entities, payload, cost_ms, version, expires_at, evidence)
            return flushed

        got = await self._round_trip("put", commands, transaction=True)
        if got is None:
            self._metrics.dropped_puts["unavailable"] += 1
            return False
        flushed, replies = got
        if flushed:
            await self._settle_version(replies[1], flushed)
        if unit is not None and signature is not None and version == self._version:
            self._index.add(key.digest, key.partition, unit, signature, version, expires_at, evidence)
        self._metrics.puts += 1
        return True

    async def put_many(self, items: Iterable[CacheItem]) -> int:
        """Store many entries under the current version with pipelined chunks (warm-up, benchmarks).

        Other workers pick the vectors up from the stream; returns how many entries were stored.
        """
        if not self._version_known:
            await self._sync("put_many")
        version = self._version
        stored = 0
        chunk: list[tuple[CacheItem, QueryVector | None]] = []

        async def flush() -> bool:
            nonlocal stored
            expires_at = time.time() + self.config.ttl_s

            def commands(pipe: Pipeline) -> None:
                for item, unit in chunk:
                    self._queue_put(
                        pipe,
                        item.key,
                        unit,
                        item.entities,
                        item.payload,
                        item.cost_ms,
                        version,
                        expires_at,
                        item.evidence,
                        refresh_log=False,
                    )
                pipe.pexpire(self._log_key, 2 * self._ttl_ms)

            got = await self._round_trip("put_many", commands, bulk=True)
            if got is None:
                return False
            stored += len(chunk)
            self._metrics.puts += len(chunk)
            chunk.clear()
            return True

        for item in items:
            if len(item.payload) > self.config.max_payload_bytes:
                self._metrics.dropped_puts["too_large"] += 1
                continue
            chunk.append((item, unit_vector(item.vector) if item.vector is not None else None))
            if len(chunk) >= _BULK_CHUNK and not await flush():
                return stored
        if chunk:
            await flush()
        return stored

    async def bump_version(self) -> int:
        """INCRBY the shared version (plus any bumps that could not reach Redis earlier).

        If Redis cannot be reached the bump is kept and applied by the next call that reaches
        it; the value returned is then provisional (last known version plus pending bumps).
        """
        flushed = self._pending_bumps + 1

        def commands(pipe: Pipeline) -> None:
            pipe.set(self._version_key, _fresh_version(), nx=True)
            pipe.incrby(self._version_key, flushed)

        got = await self._round_trip("bump_version", commands)
        if got is None:
            self._pending_bumps += 1
            return self._version + self._pending_bumps
        self._pending_bumps -= flushed - 1
        self._adopt_version(int(got[1][1]))
        return self._version

    # -- reporting -------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """Reachability (one cheap round trip unless the breaker is open), version, policy, counters."""
        available = await self._sync("status", count=1) is not None
        return {
            "backend": "redis",
            "available": available,
            "kb_version": self._version,
            "pending_version_bumps": self._pending_bumps,
            "key_prefix": self.config.key_prefix,
            "eviction_policy": dict(self._policy),
            "breaker": self._breaker.snapshot(),
            "semantic_entries": len(self._index),
            "semantic_partitions": self._index.partitions,
            "max_entries": self.config.max_entries,
            "ttl_s": self.config.ttl_s,
            "semantic_threshold": self.config.semantic_threshold,
            "verify_threshold": self.config.verify_threshold,
            "socket_timeout_s": self.config.socket_timeout_s,
            "metrics": self._metrics.snapshot(),
        }

    def metrics(self) -> dict[str, Any]:
        """Counters: hits per tier, misses, guard rejections by reason, errors, time saved."""
        return self._metrics.snapshot()

    # -- internals: round trips --------------------------------------------------------------
    async def _round_trip(
        self,
        operation: str,
        commands: Callable[[Pipeline], _T],
        *,
        transaction: bool = False,
        bulk: bool = False,
    ) -> tuple[_T, list[Any]] | None:
        """Run one pipeline through the breaker; None on any failure (counted and logged)."""
        if not self._breaker.allow():
            self._metrics.short_circuited += 1
            return None
        client = self._bulk_redis if bulk else self._redis
        try:
            # The socket timeout bounds each read; the deadline bounds the whole exchange.
            async with asyncio.timeout(_BULK_DEADLINE_S if bulk else self._deadline_s):
                async with client.pipeline(transaction=transaction) as pipe:
                    queued = commands(pipe)
                    replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._breaker.record_failure()
            self._metrics.error(operation)
            self._warn(
                "query cache: Redis %s failed (%s: %s); serving misses", operation, type(exc).__name__, exc
            )
            return None
        except BaseException:
            self._breaker.abandon()
            raise
        self._breaker.record_success()
        return queued, list(replies)

    async def _sync(self, operation: str, *, count: int | None = None, bulk: bool = False) -> int | None:
        """Read the version and new stream records; returns how many records, None on failure."""

        def commands(pipe: Pipeline) -> int:
            flushed = self._queue_version(pipe)
            pipe.xread({self._log_key: self._last_id}, count=count or self.config.sync_batch)
            return flushed

        got = await self._round_trip(operation, commands, bulk=bulk)
        if got is None:
            return None
        flushed, replies = got
        first = _first_after_version(flushed)
        version = await self._settle_version(replies[first - 1], flushed)
        read = self._apply_stream(replies[first], follow_up=not bulk)
        return None if version is None else read

    def _queue_stream_read(self, pipe: Pipeline) -> bool:
        """Queue an XREAD of new stream records unless a catch-up owns the stream position now."""
        if self._catching_up:
            return False
        pipe.xread({self._log_key: self._last_id}, count=self.config.sync_batch)
        return True

    def _queue_version(self, pipe: Pipeline) -> int:
        """Queue the version read, applying pending bumps first; returns how many bumps it applies."""
        flushed = self._pending_bumps
        if flushed:
            pipe.set(self._version_key, _fresh_version(), nx=True)
            pipe.incrby(self._version_key, flushed)
        else:
            pipe.get(self._version_key)
        return flushed

    async def _settle_version(self, raw: Any, flushed: int) -> int | None:
        """Adopt the version a round trip read; creates the key when it is missing."""
        self._pending_bumps -= flushed
        if raw is None:
            got = await self._round_trip(
                "init_version",
                lambda pipe: (
                    pipe.set(self._version_key, _fresh_version(), nx=True),
                    pipe.get(self._version_key),
                ),
            )
            if got is None or got[1][1] is None:
                return None
            raw = got[1][1]
        self._adopt_version(int(raw))
        return self._version

    def _adopt_version(self, version: int) -> None:
        if self._version_known and version < self._version:
            # Only possible if someone reset the key by hand: start the local view over.
            self._index.clear()
            self._last_id = b"0-0"
        elif version > self._version:
            self._index.purge(now=time.time(), min_version=version)
        self._version = version
        self._version_known = True

    def _queue_put(
        self,
        pipe: Pipeline,
        key: CacheKey,
        unit: QueryVector | None,
        entities: Set[str],
        payload: bytes,
        cost_ms: float,
        version: int,
        expires_at: float,
        evidence: Evidence = (),
        *,
        refresh_log: bool = True,
    ) -> None:
        entry = _pack_entry(version, cost_ms, payload)
        pipe.set(self._entry_prefix + key.digest, entry, px=self._ttl_ms)
        if key.canonical and self.config.canonical:
            pipe.set(self._canonical_prefix + key.canonical_digest, entry, px=self._ttl_ms)
        if unit is None:
            return
        # Two fields, not one per attribute: replaying 50k records is dominated by RESP parsing
        # in Python, which costs per bulk string.
        meta = {
            "d": key.digest,
            "part": key.partition,
            "v": version,
            "q": key.query,
            "ent": sorted(entities),
            "ev": list(evidence),
            "exp": expires_at,
        }
        record: dict[FieldT, EncodableT] = {
            "m": json.dumps(meta, ensure_ascii=False, separators=(",", ":")),
            "x": unit.astype(np.float32).tobytes(),
        }
        # MINID trims records older than the TTL: their entries are gone, so the log stays as
        # long as the live cache and a late worker replays only what can still be served.
        oldest = max(0, int(time.time() * 1000) - self._ttl_ms)
        pipe.xadd(self._log_key, record, minid=oldest, approximate=True)
        if refresh_log:
            # The log outlives entries by one TTL and vanishes with an idle cache.
            pipe.pexpire(self._log_key, 2 * self._ttl_ms)

    # -- internals: local state --------------------------------------------------------------
    def _apply_stream(self, raw: Any, *, follow_up: bool = True) -> int:
        """Add the rows of new stream records to the local matrix; returns how many records.

        A full batch means this worker is behind (it started late or missed a burst of puts):
        with `follow_up` the rest is fetched by a background catch-up, off the request path.
        """
        records = _stream_records(raw)
        self._synced_at = time.monotonic()
        now = time.time()
        position = _stream_id(self._last_id)
        for record_id, fields in records:
            if _stream_id(record_id) <= position:
                continue  # already applied (a catch-up and a lookup read overlapping ranges)
            self._last_id, position = record_id, _stream_id(record_id)
            try:
                meta = json.loads(fields[b"m"])
                version, expires_at = int(meta["v"]), float(meta["exp"])
                if version < self._version or expires_at <= now:
                    continue
                unit = unit_vector(np.frombuffer(fields[b"x"], dtype=np.float32))
                signature = guard_signature(str(meta["q"]), frozenset(meta["ent"]))
                ev = [str(doc) for doc in meta.get("ev", ())]
                self._index.add(str(meta["d"]), str(meta["part"]), unit, signature, version, expires_at, ev)
            except (KeyError, ValueError, TypeError) as exc:
                # A record from another code version or a different embedding dimension.
                self._warn("query cache: skipped stream record %r (%s)", record_id, exc)
        if follow_up and len(records) >= self.config.sync_batch:
            self._catch_up_in_background()
        return len(records)

    def _as_hit(self, tier: Tier, raw: Any, version: int, similarity: float) -> CacheHit | None:
        """The hit an entry's GET reply holds, if the entry exists and belongs to `version`."""
        if raw is None:
            return None
        try:
            entry_version, cost_ms, payload = _unpack_entry(bytes(raw))
        except ValueError:
            return None  # not written by this code: treat as absent
        if entry_version != version:
            return None
        return CacheHit(tier, payload, similarity, cost_ms)

    def _degraded_miss(self, tier: Tier) -> CacheLookup:
        self._metrics.miss(tier)
        return CacheLookup(None, self._version + self._pending_bumps, degraded=True)

    def _semantic_miss(self, rejection: GuardReason | None) -> CacheLookup:
        self._metrics.miss("semantic")
        if rejection is not None:
            self._metrics.rejected(rejection)
        return CacheLookup(None, self._version, rejection)

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge >= _PURGE_INTERVAL_S:
            self._last_purge = now
            self._index.purge(now=time.time(), min_version=self._version)

    def _gauges(self) -> dict[str, float]:
        return {
            "semantic_entries": float(len(self._index)),
            "breaker_open": float(self._breaker.state is BreakerState.OPEN),
            "kb_version": float(self._version),
        }
