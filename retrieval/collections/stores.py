"""The configured store and pointer, opened by name: the one place settings meet the store role."""

from __future__ import annotations

from retrieval.settings import Settings
from retrieval.store import milvus, pointer
from retrieval.store.milvus import MilvusStore


def store_for(settings: Settings, collection: str, cls: type[MilvusStore] | None = None) -> MilvusStore:
    """The store of `collection` as the settings configure it (URI, token, timeouts, Lite index)."""
    return milvus.store_for(settings.store, settings.milvus_uri, collection, cls)


def pointer_for(settings: Settings) -> pointer.FilePointer | pointer.AliasPointer:
    """The pointer of the configured logical collection: a file on Milvus Lite, an alias on a server."""
    return pointer.pointer_for(settings.store, settings.milvus_uri, settings.collections_dir)
