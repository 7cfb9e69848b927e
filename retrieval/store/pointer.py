"""Which physical collection is live behind the logical collection name, and which was live before.

A reindex builds a new physical collection beside the live one and then swaps a pointer, so the
old collection stays intact for a rollback. Milvus Lite has no aliases (`create_alias` answers
UNIMPLEMENTED), so there the pointer is a small JSON file in the data folder, replaced atomically.
A Milvus server gets a real alias (``<logical>__live``), so every client of the server can follow
the swap; the previous collection and the history are kept in the same JSON file as on Lite.

The first physical collection keeps the logical name (collections created before reindexing
existed): no pointer file means the logical name is live.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from retrieval.errors import PointerError
from retrieval.store.config import GRPC_OPTIONS, StoreConfig
from retrieval.store.milvus import is_lite_uri
from retrieval.util import utc_now, write_json_atomic

_R = TypeVar("_R")

logger = logging.getLogger(__name__)

_CONNECT_ATTEMPTS, _CONNECT_RETRY_S = 3, 0.5

COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
"""Milvus collection (and alias) names: a letter or underscore, then letters, digits, underscores."""
MAX_HISTORY = 50


@dataclass(frozen=True)
class PointerEntry:
    """One collection becoming live: which, built for which encoder spec, and when (UTC, ISO 8601)."""

    collection: str
    spec: str
    at: str


@dataclass(frozen=True)
class PointerState:
    """What the pointer records."""

    active: str
    previous: str | None
    history: tuple[PointerEntry, ...] = ()

    def spec_of(self, collection: str) -> str | None:
        """The encoder spec recorded the last time `collection` became live (None if never)."""
        return next((e.spec for e in reversed(self.history) if e.collection == collection and e.spec), None)


class CollectionPointer(Protocol):
    """Names the live physical collection of one logical collection."""

    @property
    def logical(self) -> str:
        """The logical collection name (`settings.store.collection`)."""
        ...

    async def active(self) -> str:
        """The live physical collection."""
        ...

    async def previous(self) -> str | None:
        """The collection live before the last swap (the rollback target), if any."""
        ...

    async def swap(self, new: str, *, spec: str = "") -> str | None:
        """Make `new` live (recording the encoder spec it was built for); returns the one it replaced."""
        ...

    async def state(self) -> PointerState:
        """Active, previous and the swap history."""
        ...


def check_collection_name(name: str) -> str:
    """`name` if Milvus accepts it as a collection name; else ValueError."""
    if not COLLECTION_NAME.match(name):
        raise ValueError(f"invalid Milvus collection name {name!r}")
    return name


class FilePointer:
    """The pointer as a JSON file (``<data_dir>/collections/<logical>.json``); used on Milvus Lite."""

    def __init__(self, path: Path, logical: str):
        self.path = path
        self._logical = check_collection_name(logical)

    @property
    def logical(self) -> str:
        """The logical collection name."""
        return self._logical

    def read(self) -> PointerState:
        """The recorded state; the logical name is live when there is no file yet."""
        if not self.path.exists():
            return PointerState(self._logical, None)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            history = tuple(
                PointerEntry(str(e["collection"]), str(e.get("spec", "")), str(e["at"]))
                for e in raw.get("history", [])
            )
            previous = raw.get("previous")
            state = PointerState(
                check_collection_name(str(raw["active"])),
                check_collection_name(str(previous)) if previous else None,
                history,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PointerError(f"collection pointer {self.path} is unreadable: {exc}") from exc
        return state

    def write(self, state: PointerState) -> None:
        """Replace the file atomically."""
        payload = {
            "logical": self._logical,
            "active": state.active,
            "previous": state.previous,
            "history": [asdict(e) for e in state.history[-MAX_HISTORY:]],
        }
        write_json_atomic(self.path, payload)

    def swapped(self, new: str, spec: str) -> tuple[PointerState, str | None]:
        """The state after making `new` live, and the collection it replaces (not yet written)."""
        check_collection_name(new)
        current = self.read()
        if new == current.active:
            return current, current.previous
        entry = PointerEntry(new, spec, utc_now())
        return PointerState(new, current.active, (*current.history, entry)), current.active

    async def active(self) -> str:
        """The live physical collection."""
        return self.read().active

    async def previous(self) -> str | None:
        """The collection live before the last swap."""
        return self.read().previous

    async def state(self) -> PointerState:
        """Active, previous and history."""
        return self.read()

    async def swap(self, new: str, *, spec: str = "") -> str | None:
        """Point at `new`; returns the collection it replaced."""
        state, replaced = self.swapped(new, spec)
        # Synchronous on purpose: a few hundred bytes, and a swap must not be interleaved.
        self.write(state)
        logger.info("collection pointer %s: %s -> %s", self._logical, replaced, new)
        return replaced


class AliasPointer:
    """The pointer as a Milvus alias (``<logical>__live``) on a Milvus server, history in a JSON file.

    The alias is the authority on which collection is live; the file adds what an alias cannot
    hold (the previous collection, the encoder spec of each). Without the alias the file decides.
    """

    def __init__(self, uri: str, logical: str, path: Path, *, token: str = "", timeout_s: float = 5.0):
        self.uri = uri
        self.alias = check_collection_name(f"{logical}__live")
        self._file = FilePointer(path, logical)
        self._token = token
        self._timeout_s = timeout_s

    @property
    def logical(self) -> str:
        """The logical collection name."""
        return self._file.logical

    def _client(self) -> MilvusClient:
        # pymilvus shares one connection per URI; one the server dropped (a restart, or a GOAWAY
        # for too many keepalive pings) fails its first reconnect while the server is up. A new
        # attempt a moment later connects; a server that is really down still fails, a second on.
        for attempt in range(_CONNECT_ATTEMPTS):
            try:
                return MilvusClient(
                    uri=self.uri, token=self._token, timeout=self._timeout_s, grpc_options=GRPC_OPTIONS
                )
            except MilvusException:
                if attempt == _CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(_CONNECT_RETRY_S)
        raise AssertionError("unreachable")

    def _exists(self, client: MilvusClient) -> bool:
        # Listed first: asking Milvus to describe (or alter) an alias that does not exist yet is an
        # error pymilvus logs with a traceback, on every fresh start, though nothing is wrong.
        listed = client.list_aliases()  # no collection named: every alias of the database
        return self.alias in (listed.get("aliases") or [])

    def _aliased(self) -> str | None:
        client = self._client()
        try:
            if not self._exists(client):
                return None  # nothing was ever swapped on this server
            described = client.describe_alias(self.alias)
        except MilvusException:
            return None
        finally:
            client.close()
        return str(described.get("collection_name")) if described else None

    def _point(self, new: str) -> None:
        client = self._client()
        try:
            if self._exists(client):
                client.alter_alias(new, self.alias)
            else:
                client.create_alias(new, self.alias)
        except MilvusException as exc:
            raise PointerError(f"could not point alias {self.alias} at {new}: {exc.message}") from exc
        finally:
            client.close()

    async def active(self) -> str:
        """The collection the alias names, else what the file says."""
        aliased = await asyncio.to_thread(self._aliased)
        return aliased or self._file.read().active

    async def previous(self) -> str | None:
        """The collection live before the last swap."""
        return self._file.read().previous

    async def state(self) -> PointerState:
        """Active (from the alias), previous and history."""
        recorded = self._file.read()
        aliased = await asyncio.to_thread(self._aliased)
        if aliased and aliased != recorded.active:
            return PointerState(aliased, recorded.previous, recorded.history)
        return recorded

    async def swap(self, new: str, *, spec: str = "") -> str | None:
        """Move the alias to `new`, then record it; returns the collection it replaced."""
        state, replaced = self._file.swapped(new, spec)
        aliased = await asyncio.to_thread(self._aliased)
        if aliased and aliased != new:
            replaced = aliased
            state = PointerState(new, aliased, state.history)
        await asyncio.to_thread(self._point, new)
        self._file.write(state)
        logger.info("alias %s: %s -> %s", self.alias, replaced, new)
        return replaced


def pointer_for(config: StoreConfig, uri: str, folder: Path) -> FilePointer | AliasPointer:
    """The pointer of `config.collection`: a file in `folder` on Milvus Lite, an alias on a server."""
    logical = config.collection
    path = folder / f"{logical}.json"
    if is_lite_uri(uri) or config.lite_server:  # Lite has no aliases
        return FilePointer(path, logical)
    return AliasPointer(uri, logical, path, token=config.token, timeout_s=config.timeout_s)
