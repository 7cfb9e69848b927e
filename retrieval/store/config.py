"""How a Milvus store is reached and indexed: the `[store]` settings section."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StoreConfig:
    """Where the Milvus collection lives and how it is searched."""

    uri: str = ""
    """Empty: Milvus Lite in the data folder. Otherwise a Milvus server URI."""
    token: str = field(default="", repr=False)
    collection: str = "kb_chunks"
    """The logical collection name (an alias or pointer names the physical one)."""
    timeout_s: float = 5.0
    search_timeout_s: float = 2.0
    load_timeout_s: float = 600.0
    lite_server: bool = False
    """The URI is Milvus Lite's own binary serving a file over TCP: a server with Lite's indexes."""
    lite_index: str = "FLAT"
    ivf_nlist: int = 1024
    ivf_nprobe: int = 32
    search_batch: int = 16
    """Most query vectors one engine call carries when concurrent searches share it (1: none share)."""
