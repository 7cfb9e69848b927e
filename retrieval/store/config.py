"""How a Milvus store is reached and indexed: the `[store]` settings section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GRPC_OPTIONS: dict[str, Any] = {
    "grpc.keepalive_time_ms": 330_000,
    "grpc.keepalive_permit_without_calls": 0,
}
"""gRPC channel options of every Milvus client the store makes.

pymilvus' own default pings every 10 s, idle or not. Milvus Lite answers that with GOAWAY
"too_many_pings" when the machine is busy (gRPC's default server policy allows one ping per 5
minutes without data; an idle client on 2 loaded cores got two GOAWAYs in 120 s with pymilvus'
options and none with these). The connection pymilvus then shares per URI failed to reconnect in
time more than once (a store open during `rank cv`, an alias swap in CI). So pings come no more
often than that policy allows, and never on an idle connection: every call has its own deadline,
which is what notices a dead server.
"""


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
