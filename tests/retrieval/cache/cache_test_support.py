"""Helpers for the cache tests: constructed vectors, key cleanup, private redis-server processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt
import pytest
import redis

from retrieval.cache.redis_cache import RedisCache

SHARED_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DIM = 64

MakeCache = Callable[..., Awaitable[RedisCache]]
"""Builds a started RedisCache ("worker") on the shared Redis under the test's key prefix."""


def unit(vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """`vector` scaled to length one, as float32."""
    arr = np.asarray(vector, dtype=np.float64)
    return (arr / np.linalg.norm(arr)).astype(np.float32)


def random_unit(seed: int, dim: int = DIM) -> npt.NDArray[np.float32]:
    """A reproducible random unit vector."""
    return unit(np.random.default_rng(seed).standard_normal(dim))


def at_cosine(base: npt.NDArray[np.float32], cosine: float, seed: int = 0) -> npt.NDArray[np.float32]:
    """A unit vector whose cosine with unit vector `base` is exactly `cosine` (a constructed paraphrase)."""
    rng = np.random.default_rng(seed)
    b = base.astype(np.float64)
    other = np.asarray(rng.standard_normal(b.shape[0]), dtype=np.float64)
    other -= float(other.dot(b)) * b
    other /= np.linalg.norm(other)
    return np.asarray(cosine * b + np.sqrt(1.0 - cosine**2) * other, dtype=np.float32)


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (SCAN + UNLINK in batches; never FLUSHDB)."""
    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server subprocess this test owns: no persistence, on a port of its own."""

    def __init__(self, extra_args: tuple[str, ...] = ()):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH")
        self.binary = binary
        self.port = _free_port()
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
                client.ping()
                client.close()
                return
            except redis.RedisError:
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: the abrupt death a cache must survive."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but never answers (a hung or overloaded Redis)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
