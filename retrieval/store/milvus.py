"""Milvus as the vector store: Milvus Lite (a file) by default, a Milvus server by URI.

The same code serves both; what differs (the index choice) is in `retrieval.store.layout`, and
the swap-time `HandoverStore` is in `retrieval.store.handover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pymilvus import AsyncMilvusClient, MilvusClient
from pymilvus.client.types import Status
from pymilvus.exceptions import (
    ConnectError,
    ConnectionNotExistException,
    MilvusException,
    MilvusUnavailableException,
)
from pymilvus.milvus_client.index import IndexParams

from retrieval.batching import MicroBatcher
from retrieval.errors import ModelMismatch, StoreError, StoreUnavailable
from retrieval.store.config import GRPC_OPTIONS, StoreConfig
from retrieval.store.filters import doc_ids_expression, milvus_expression, titles_expression
from retrieval.store.layout import (
    HNSW_EF,
    chunk_schema,
    index_params,
    index_summary,
    model_properties,
    recorded_model,
)
from retrieval.types import (
    SAFE_STRING,
    ChunkRecord,
    CollectionInfo,
    SearchFilter,
    SparseVector,
    StoredHit,
    StoredTerms,
)
from retrieval.util import CircuitBreaker

logger = logging.getLogger(__name__)

_HIT_FIELDS = ["doc_id", "title", "kind", "text", "chunk_index", "metadata"]
# Milvus caps one query's result window at 16384 rows.
_QUERY_WINDOW = 16_384
# Milvus' error code for a search or query on a collection that is not loaded.
_COLLECTION_NOT_LOADED = 101


@dataclass(frozen=True)
class _SearchKey:
    """What makes searches shareable in one engine call: the same path, depth and filter.

    The search parameters are not part of it: a store derives them from the path and the depth
    alone (`dense_search_params`, the sparse path's fixed ones).
    """

    field: str
    limit: int
    expression: str


def _stored_hit(item: Any) -> StoredHit:
    entity = item.get("entity", {})
    return StoredHit(
        id=str(item["id"]),
        score=float(item["distance"]),
        doc_id=entity.get("doc_id", ""),
        title=entity.get("title", ""),
        kind=entity.get("kind", ""),
        text=entity.get("text", ""),
        chunk_index=int(entity.get("chunk_index", 0)),
        metadata=dict(entity.get("metadata") or {}),
    )


def _terms(row: dict[str, Any]) -> StoredTerms:
    return StoredTerms(str(row["id"]), str(row.get("doc_id", "")), dict(row["tf"]), int(row["doc_len"]))


# What a copy into another collection needs: everything but the dense vector.
_COPY_FIELDS = ["doc_id", "title", "kind", "text", "chunk_index", "metadata", "tf", "doc_len", "sparse"]
# Chunk ids are `<doc id>#<n>` with validated doc ids; anything else is never put into an expression.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}#[0-9]{1,9}$")


def _unreachable(exc: MilvusException) -> bool:
    """Whether a client error means Milvus could not be reached (rather than refusing the call)."""
    return isinstance(exc, ConnectError | MilvusUnavailableException | ConnectionNotExistException) or (
        exc.code == Status.CONNECT_FAILED
    )


def _record(row: dict[str, Any]) -> ChunkRecord:
    return ChunkRecord(
        id=str(row["id"]),
        doc_id=str(row["doc_id"]),
        title=str(row["title"]),
        kind=str(row["kind"]),
        text=str(row["text"]),
        chunk_index=int(row["chunk_index"]),
        metadata=dict(row.get("metadata") or {}),
        dense=np.zeros(0, dtype=np.float32),
        sparse={int(k): float(v) for k, v in dict(row["sparse"]).items()},
        terms=dict(row["tf"]),
        length=int(row["doc_len"]),
    )


def _close_quietly(rows: Iterator[list[dict[str, Any]]]) -> None:
    # After a cancellation the worker thread may still be inside next(); the generator then
    # refuses to close ("already executing") and is closed when it is collected instead.
    close = getattr(rows, "close", None)
    if close is not None:
        with contextlib.suppress(ValueError):
            close()


def is_lite_uri(uri: str) -> bool:
    """Milvus Lite is addressed by a local file path; servers by http(s)/tcp/unix URIs."""
    return not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def store_for(
    config: StoreConfig, uri: str, collection: str, cls: type[MilvusStore] | None = None
) -> MilvusStore:
    """The store of `collection` at `uri` as `config` says (token, timeouts, Lite index)."""
    return (cls or MilvusStore)(
        uri,
        collection,
        token=config.token,
        timeout_s=config.timeout_s,
        search_timeout_s=config.search_timeout_s,
        load_timeout_s=config.load_timeout_s,
        lite_server=config.lite_server,
        lite_index=config.lite_index,
        ivf_nlist=config.ivf_nlist,
        ivf_nprobe=config.ivf_nprobe,
        search_batch=config.search_batch,
    )


def release_lite(uri: str) -> None:
    """Stop this process's Milvus Lite server for `uri`, so another process may open the file.

    Milvus Lite lets one process at a time open a file and keeps its server running until the
    process exits; call this once no client in this process uses the file any more.
    """
    if is_lite_uri(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(Path(uri).resolve()))


class MilvusStore:
    """One collection of chunks in Milvus, with a dense and a sparse (BM25) vector per chunk."""

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        token: str = "",
        timeout_s: float = 5.0,
        search_timeout_s: float = 1.0,
        load_timeout_s: float = 600.0,
        lite_server: bool = False,
        lite_index: str = "FLAT",
        ivf_nlist: int = 1024,
        ivf_nprobe: int = 32,
        search_batch: int = 16,
        breaker: CircuitBreaker | None = None,
    ):
        if lite_index not in {"FLAT", "IVF_FLAT"}:
            raise ValueError(f"Milvus Lite offers FLAT or IVF_FLAT, not {lite_index!r}")
        self.lite_index, self.ivf_nlist, self.ivf_nprobe = lite_index, ivf_nlist, ivf_nprobe
        if not collection.replace("_", "").isalnum():
            raise ValueError(f"invalid collection name {collection!r}")
        self.uri = uri
        self.collection = collection
        self.timeout_s = timeout_s
        self.search_timeout_s = min(search_timeout_s, timeout_s)
        self.load_timeout_s = max(load_timeout_s, timeout_s)
        local_file = is_lite_uri(uri)
        # Milvus Lite's binary can also serve a file over TCP (`milvus <file> <host:port>`): a
        # server by URI, but with Lite's index choices.
        self.lite = local_file or lite_server
        if local_file:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        # While Milvus is known to be down, calls fail at once instead of each waiting for a
        # connect timeout; after the cooldown one call probes, and its success closes the circuit.
        self.breaker = breaker or CircuitBreaker(failure_threshold=3, cooldown_s=1.0, name="store")
        self._token = token
        self._client: AsyncMilvusClient | None = None
        self._sync: MilvusClient | None = None
        self._dim = 0
        if search_batch < 1:
            raise ValueError("search_batch must be >= 1")
        self.search_batch = search_batch
        # One batcher per kind of search in progress (path, depth, filter, parameters); dropped
        # when idle, so user filters that vary per request do not pile up.
        self._batchers: dict[_SearchKey, MicroBatcher[Any, list[list[StoredHit]]]] = {}
        self.search_calls = 0
        """Engine search calls made (each answers one or more searches)."""
        self.dense_index: dict[str, Any] = {}
        """The dense index in use (type, metric, build and search parameters), once `open`ed."""

    @property
    def dim(self) -> int:
        """The dense vectors' dimension (0 until `open`)."""
        return self._dim

    # -- connection -------------------------------------------------------------------------
    def _async(self) -> AsyncMilvusClient:
        if self._client is None:
            self._client = AsyncMilvusClient(
                uri=self.uri, token=self._token, timeout=self.timeout_s, grpc_options=GRPC_OPTIONS
            )
        return self._client

    def _blocking(self) -> MilvusClient:
        # Iterators exist only on the synchronous client; used for maintenance, off the loop.
        if self._sync is None:
            self._sync = MilvusClient(
                uri=self.uri, token=self._token, timeout=self.timeout_s, grpc_options=GRPC_OPTIONS
            )
        return self._sync

    async def _call(self, what: str, coro: Any, *, timeout_s: float | None = None) -> Any:
        """Await one client call with a deadline, mapping failures to the store's errors.

        `timeout_s` (default: the store timeout) bounds the whole call, connecting included;
        pymilvus' own timeout covers only the RPC.
        """
        if not self.breaker.allow():
            coro.close()  # never awaited: release it without a "never awaited" warning
            raise StoreUnavailable(f"Milvus is unreachable ({what} not attempted); retrying shortly")
        deadline = timeout_s or self.timeout_s * 2
        try:
            result = await asyncio.wait_for(coro, timeout=deadline)
        except TimeoutError as exc:
            self.breaker.record_failure()
            raise StoreUnavailable(f"Milvus {what} timed out after {deadline:.1f}s") from exc
        except MilvusException as exc:
            if _unreachable(exc):
                self.breaker.record_failure()
                raise StoreUnavailable(f"Milvus {what}: {exc.message}") from exc
            self.breaker.record_success()  # it answered, with an error: reachable
            raise StoreError(f"Milvus {what} failed: {exc.message}") from exc
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        except Exception as exc:  # grpc errors surface as several unrelated types
            if type(exc).__module__.startswith("grpc"):
                self.breaker.record_failure()
                raise StoreUnavailable(f"Milvus {what}: {exc}") from exc
            self.breaker.abandon()
            raise
        self.breaker.record_success()
        return result

    # -- collection ------------------------------------------------------------------------
    def _create_indexes(self, fields: Collection[str] | None = None) -> None:
        """Declare the layout's indexes (only those on `fields`, when given)."""
        # pymilvus' wait for a finished build asks the server for a timestamp (AllocTimestamp), an
        # RPC Milvus Lite's server lacks; only the blocking client can skip that wait. Nothing is
        # stored yet (or, repairing, the collection is not loaded: loading builds them), so the
        # indexes are complete as soon as they are declared.
        params = index_params(self.lite, self.lite_index, self.ivf_nlist)
        if fields is not None:
            params = IndexParams(p for p in params if p.field_name in fields)
        if params:
            self._blocking().create_index(self.collection, params, sync=False, timeout=self.timeout_s)

    async def _repair_indexes(self) -> None:
        # A creation cut short (the process killed, the connection lost) leaves a collection with
        # no index, which no search can use and which, without this, no later open would mend.
        declared = {p.field_name for p in index_params(self.lite, self.lite_index, self.ivf_nlist)}
        listed = await self._call("list_indexes", self._async().list_indexes(self.collection))
        missing = declared - set(listed or [])
        if missing:
            logger.warning(
                "collection %s lacks indexes on %s: creating them", self.collection, sorted(missing)
            )
            await self._call("create_index", asyncio.to_thread(self._create_indexes, missing))

    async def open(self, model_id: str, dim: int) -> CollectionInfo:
        """Create the collection, or verify the existing one was built by `model_id` at `dim`."""
        client = self._async()
        exists = await self._call("has_collection", client.has_collection(self.collection))
        if not exists:
            await self._call(
                "create_collection",
                client.create_collection(
                    self.collection,
                    schema=chunk_schema(model_id, dim),
                    properties=model_properties(model_id, dim),
                    # Strong: a chunk acknowledged by an ingest is visible to the next search.
                    consistency_level="Strong",
                ),
            )
            await self._call("create_index", asyncio.to_thread(self._create_indexes))
            logger.info("created collection %s (model %s, dim %d)", self.collection, model_id, dim)
        else:
            info = await self.describe()
            if info.model_id != model_id or info.dim != dim:
                raise ModelMismatch(
                    f"collection {self.collection!r} was built with model {info.model_id!r} "
                    f"(dim {info.dim}) but the configured model is {model_id!r} (dim {dim}). "
                    "Re-embed it with `search-api reindex`, point SEARCH_STORE_COLLECTION at a new "
                    "collection, or configure the model it was built with."
                )
            await self._repair_indexes()
        await self._load()
        self._dim = dim
        described = await self._call(
            "describe_index", self._async().describe_index(self.collection, "dense", timeout=self.timeout_s)
        )
        self.dense_index = index_summary(described or {}, self.dense_search_params(10))
        return CollectionInfo(self.collection, model_id, dim, await self.count())

    async def _load(self) -> None:
        # Loading builds the dense index in memory: seconds per 100k chunks on Lite, so it gets
        # its own deadline; the per-call one would refuse to open a large collection at all.
        await self._call(
            "load_collection",
            self._async().load_collection(self.collection, timeout=self.load_timeout_s),
            timeout_s=self.load_timeout_s,
        )

    async def _read(
        self, what: str, call: Callable[[], Awaitable[Any]], *, timeout_s: float | None = None
    ) -> Any:
        """`_call` for a search or query, loading the collection again once if it was released.

        A server restarted under a running API may come back with the collection released (Milvus
        Lite's server always does; Milvus does after someone releases it): load it and retry once.
        """
        try:
            return await self._call(what, call(), timeout_s=timeout_s)
        except StoreError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, MilvusException) and cause.code == _COLLECTION_NOT_LOADED):
                raise
        logger.warning("collection %s is not loaded (a restarted server?); loading it again", self.collection)
        await self._load()
        return await self._call(what, call(), timeout_s=timeout_s)

    async def describe(self) -> CollectionInfo:
        """Model id and dimension recorded in the collection (see `recorded_model`)."""
        desc = await self._call("describe_collection", self._async().describe_collection(self.collection))
        dim = next((int(f["params"]["dim"]) for f in desc["fields"] if f["name"] == "dense"), 0)
        return CollectionInfo(self.collection, recorded_model(desc), dim, 0)

    async def drop(self) -> None:
        """Delete the collection and everything in it."""
        await self._call("drop_collection", self._async().drop_collection(self.collection))

    # -- writes ----------------------------------------------------------------------------
    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        """Insert or replace chunks by id."""
        if not records:
            return
        rows = [
            {
                "id": r.id,
                "doc_id": r.doc_id,
                "title": r.title,
                "kind": r.kind,
                "text": r.text,
                "chunk_index": r.chunk_index,
                "metadata": r.metadata,
                "tf": r.terms,
                "doc_len": r.length,
                "dense": np.asarray(r.dense, dtype=np.float32),
                "sparse": r.sparse,
            }
            for r in records
        ]
        await self._call("upsert", self._async().upsert(self.collection, rows, timeout=self.timeout_s))

    async def delete(self, chunk_ids: Sequence[str]) -> None:
        """Remove chunks by id."""
        if chunk_ids:
            await self._call(
                "delete", self._async().delete(self.collection, ids=list(chunk_ids), timeout=self.timeout_s)
            )

    async def _rows_of(self, doc_ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        """Stored rows of these documents (100 ids per query keeps each expression short)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(doc_ids), 100):
            expr = doc_ids_expression(doc_ids[start : start + 100])
            rows = await self._read(
                "query",
                functools.partial(
                    self._async().query,
                    self.collection,
                    filter=expr,
                    output_fields=fields,
                    limit=_QUERY_WINDOW,
                    timeout=self.timeout_s,
                ),
            )
            found.extend(rows)
        return found

    async def chunk_terms(self, doc_ids: Sequence[str]) -> list[StoredTerms]:
        """BM25 bookkeeping of the stored chunks of these documents."""
        return [_terms(row) for row in await self._rows_of(doc_ids, ["doc_id", "tf", "doc_len"])]

    # -- reads -----------------------------------------------------------------------------
    async def search_dense(
        self, vector: npt.NDArray[np.float32], limit: int, where: SearchFilter
    ) -> list[StoredHit]:
        """Nearest chunks by cosine similarity."""
        params = self.dense_search_params(limit)
        return await self._search("dense", [np.asarray(vector, dtype=np.float32)], limit, where, params)

    def dense_search_params(self, limit: int) -> dict[str, Any]:
        """What a dense search of `limit` hits asks of the index (HNSW: ef, at least `limit`)."""
        params: dict[str, Any] = {"metric_type": "COSINE"}
        if not self.lite:
            params["params"] = {"ef": max(HNSW_EF, limit)}
        elif self.lite_index == "IVF_FLAT":
            params["params"] = {"nprobe": self.ivf_nprobe}
        return params

    async def search_sparse(self, vector: SparseVector, limit: int, where: SearchFilter) -> list[StoredHit]:
        """Chunks by inner product with the BM25 query vector; nothing when no query term is known."""
        if not vector:
            return []
        params = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}
        return await self._search("sparse", [vector], limit, where, params)

    async def titled(self, titles: Sequence[str], limit: int, where: SearchFilter) -> list[StoredHit]:
        """Chunks of the entries with these titles that `where` allows (score 0; one query).

        A title a filter literal cannot hold (quotes, backslashes) cannot be asked for and is left out.
        """
        usable = [t for t in dict.fromkeys(titles) if SAFE_STRING.match(t)]
        if not usable or limit <= 0:
            return []
        rows = await self._call(
            "title query",
            self._async().query(
                self.collection,
                filter=titles_expression(usable, where),
                output_fields=_HIT_FIELDS,
                limit=min(limit, _QUERY_WINDOW),
                timeout=self.search_timeout_s,
            ),
            timeout_s=self.search_timeout_s,
        )
        return [
            StoredHit(
                id=str(row["id"]),
                score=0.0,
                doc_id=str(row.get("doc_id", "")),
                title=str(row.get("title", "")),
                kind=str(row.get("kind", "")),
                text=str(row.get("text", "")),
                chunk_index=int(row.get("chunk_index", 0)),
                metadata=dict(row.get("metadata") or {}),
            )
            for row in rows
        ]

    async def _search(
        self, field: str, data: list[Any], limit: int, where: SearchFilter, params: dict[str, Any]
    ) -> list[StoredHit]:
        """One search, sharing an engine call with concurrent searches that ask the same thing.

        A search that finds such a call in flight waits for it, then goes with the others that
        queued meanwhile: its wait is bounded by two search deadlines, not one.
        """
        key = _SearchKey(field, limit, milvus_expression(where))
        batcher = self._batchers.get(key)
        if batcher is None:
            run = functools.partial(self._search_many, key, params)
            batcher = self._batchers[key] = MicroBatcher(run, max_batch=self.search_batch)
        try:
            (hits,) = await batcher.submit(data)
        finally:
            if batcher.idle and self._batchers.get(key) is batcher:
                del self._batchers[key]
        return hits

    async def _search_many(
        self, key: _SearchKey, params: dict[str, Any], data: list[Any]
    ) -> list[list[StoredHit]]:
        """One engine call over several query vectors: the hits of each, in order."""
        self.search_calls += 1
        result = await self._read(
            f"{key.field} search",
            lambda: self._async().search(
                self.collection,
                data=data,
                anns_field=key.field,
                limit=key.limit,
                filter=key.expression,
                output_fields=_HIT_FIELDS,
                search_params=params,
                timeout=self.search_timeout_s,
            ),
            timeout_s=self.search_timeout_s,
        )
        found = list(result) if result else []
        # Milvus answers every query vector; an answer without one would misattribute hits.
        if len(found) != len(data):
            raise StoreError(f"Milvus answered {len(found)} of {len(data)} searches of one call")
        return [[_stored_hit(item) for item in hits] for hits in found]

    async def count(self) -> int:
        """Number of live chunks (deleted ones excluded)."""
        rows = await self._read(
            "count",
            lambda: self._async().query(
                self.collection, filter="", output_fields=["count(*)"], timeout=self.timeout_s
            ),
        )
        return int(rows[0]["count(*)"]) if rows else 0

    async def ready(self) -> bool:
        """Whether the store answers within its timeout."""
        try:
            return bool(await self._call("has_collection", self._async().has_collection(self.collection)))
        except (StoreError, OSError):
            return False

    # -- maintenance -----------------------------------------------------------------------
    def _iterate(
        self, fields: list[str], batch_size: int, filter_expr: str = ""
    ) -> Iterator[list[dict[str, Any]]]:
        iterator = self._blocking().query_iterator(
            self.collection, batch_size=batch_size, output_fields=fields, filter=filter_expr
        )
        try:
            while batch := iterator.next():
                yield batch
        finally:
            iterator.close()

    async def _iterate_async(self, fields: list[str], batch_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        rows_iter = await asyncio.to_thread(self._iterate, fields, batch_size)
        sentinel: list[dict[str, Any]] = []
        while True:
            batch = await asyncio.to_thread(next, rows_iter, sentinel)
            if batch is sentinel:
                return
            yield batch

    async def iterate_terms(self, batch_size: int = 2000) -> AsyncIterator[list[StoredTerms]]:
        """Every chunk's BM25 bookkeeping, in batches (to rebuild BM25 statistics)."""
        async for batch in self._iterate_async(["doc_id", "tf", "doc_len"], batch_size):
            yield [_terms(row) for row in batch]

    async def rewrite_sparse(
        self, reweigh: Callable[[StoredTerms], SparseVector], batch_size: int = 500
    ) -> int:
        """Recompute every chunk's sparse vector (after the BM25 reference length moved)."""
        fields = ["doc_id", "title", "kind", "text", "chunk_index", "metadata", "tf", "doc_len", "dense"]
        rewritten = 0
        async for batch in self._iterate_async(fields, batch_size):
            rows = []
            for row in batch:
                new = {k: row[k] for k in ["id", *fields]}
                new["dense"] = np.asarray(row["dense"], dtype=np.float32)
                new["sparse"] = reweigh(_terms(row))
                rows.append(new)
            await self._call("upsert", self._async().upsert(self.collection, rows, timeout=self.timeout_s))
            rewritten += len(rows)
        return rewritten

    # -- copying (reindex) ---------------------------------------------------------------
    async def exists(self) -> bool:
        """Whether the collection exists (without creating it)."""
        return bool(await self._call("has_collection", self._async().has_collection(self.collection)))

    async def iterate_chunks(
        self, *, after: str | None = None, batch_size: int = 256
    ) -> AsyncGenerator[list[ChunkRecord], None]:
        """Every chunk with a key above `after`, in primary-key order, without its dense vector.

        The records carry an empty `dense`: a reindex replaces it with the target model's vector,
        and not reading it halves what crosses the wire.
        """
        expr = ""
        if after is not None:
            if not _SAFE_KEY.match(after):
                raise ValueError(f"cannot resume after chunk id {after!r}")
            expr = f'id > "{after}"'
        rows_iter = self._iterate(_COPY_FIELDS, batch_size, expr)
        sentinel: list[dict[str, Any]] = []
        try:
            while True:
                batch = await asyncio.to_thread(next, rows_iter, sentinel)
                if batch is sentinel:
                    return
                yield [_record(row) for row in batch]
        finally:
            # Close the server-side iterator now rather than whenever the generator is collected.
            await asyncio.to_thread(_close_quietly, rows_iter)

    async def chunks(self, doc_ids: Sequence[str]) -> list[ChunkRecord]:
        """Every stored chunk of these documents, without its dense vector (see `iterate_chunks`)."""
        return [_record(row) for row in await self._rows_of(doc_ids, _COPY_FIELDS)]

    async def close(self) -> None:
        """Close both clients."""
        if self._client is not None:
            try:
                await self._client.close()
            finally:
                self._client = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
