"""A Milvus that cannot be reached: calls fail as `StoreUnavailable`, never hang, and the circuit opens.

Two real kinds of unreachable: a port nobody listens on (connection refused), and a listener that
accepts connections and never answers (a hung or black-holed server), which only a deadline ends.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from eval.server import free_port
from retrieval.errors import StoreUnavailable
from retrieval.store.milvus import MilvusStore
from retrieval.types import SearchFilter
from retrieval.util import BreakerState


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never sends a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def _vector() -> npt.NDArray[np.float32]:
    return np.full(8, 1 / np.sqrt(8), dtype=np.float32)


@pytest.mark.integration
async def test_refused_connections_are_store_unavailable_and_open_the_circuit() -> None:
    store = MilvusStore(f"http://127.0.0.1:{free_port()}", "kb", timeout_s=2.0, lite_server=True)
    try:
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match=r"Fail connecting|unreachable"):
                await store.search_dense(_vector(), 5, SearchFilter())
        assert store.breaker.state is BreakerState.OPEN
        # While open, calls are refused before any connection attempt.
        with pytest.raises(StoreUnavailable, match="not attempted"):
            await store.search_sparse({1: 1.0}, 5, SearchFilter())
        assert await store.ready() is False
    finally:
        await store.close()


@pytest.mark.integration
async def test_a_server_that_never_answers_is_cut_off_by_the_search_deadline(silent_port: int) -> None:
    store = MilvusStore(
        f"http://127.0.0.1:{silent_port}", "kb", timeout_s=5.0, search_timeout_s=0.3, lite_server=True
    )
    try:
        with pytest.raises(StoreUnavailable, match=r"timed out after 0\.3s"):
            await store.search_dense(_vector(), 5, SearchFilter())
    finally:
        await store.close()
