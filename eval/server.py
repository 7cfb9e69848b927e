"""`search-api serve` as a subprocess on a free loopback port, for benchmarks that measure over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from retrieval.settings import PROJECT_ROOT


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_server(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    ready_timeout_s: float = 300,
) -> AsyncIterator[str]:
    """Start the API on `data_dir`, yield its base URL once `/v1/ready` is 200, stop it after."""
    port = free_port()
    environ = {**os.environ, "SEARCH_DATA_DIR": str(data_dir), **(env or {})}
    sink = log.open("wb") if log is not None else None
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
        [sys.executable, "-m", "search_api.cli", "--log-level", "WARNING", "serve", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=environ,
        stdout=sink or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc, ready_timeout_s)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if sink is not None:
            sink.close()


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(int(timeout_s / 0.5)):
            try:
                ready = await client.get(f"{url}/v1/ready")
                if ready.status_code == 200:
                    return
                if "failed" in ready.text:
                    raise RuntimeError(f"server start-up failed: {ready.text}")
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            await asyncio.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s")
