"""`search-api serve` as a subprocess on a free loopback port, for benchmarks that measure over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from retrieval.settings import PROJECT_ROOT


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(
    data_dir: Path, env: Mapping[str, str] | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the API on `data_dir` and a free port; yield its base URL and process; stop it after.

    Not yet ready when yielded: wait with `wait_ready` (async) or `wait_ready_sync`.
    """
    port = free_port()
    environ = {**os.environ, "SEARCH_DATA_DIR": str(data_dir), **(env or {})}
    sink = log.open("wb") if log is not None else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "search_api.cli", "--log-level", "WARNING", "serve", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=environ,
        stdout=sink or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if sink is not None:
            sink.close()


@asynccontextmanager
async def running_server(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    ready_timeout_s: float = 300,
) -> AsyncIterator[str]:
    """Start the API on `data_dir`, yield its base URL once `/v1/ready` is 200, stop it after."""
    with server_process(data_dir, env, log) as (url, proc):  # started once, before any measurement
        await wait_ready(url, proc, ready_timeout_s)
        yield url


def _is_ready(ready: httpx.Response | None, proc: subprocess.Popen[bytes]) -> bool:
    """One poll's verdict: True when ready; raises when start-up failed or the server exited."""
    if ready is not None:
        if ready.status_code == 200:
            return True
        if "failed" in ready.text:
            raise RuntimeError(f"server start-up failed: {ready.text}")
    if proc.poll() is not None:
        raise RuntimeError(f"server exited with {proc.returncode}")
    return False


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll `/v1/ready` until 200 without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                ready: httpx.Response | None = await client.get(f"{url}/v1/ready")
            except httpx.TransportError:
                ready = None
            if _is_ready(ready, proc):
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s")


def wait_ready_sync(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    """`wait_ready` for callers without an event loop."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                ready: httpx.Response | None = client.get(f"{url}/v1/ready")
            except httpx.TransportError:
                ready = None
            if _is_ready(ready, proc):
                return
            time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s")
