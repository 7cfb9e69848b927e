"""`search-api serve` as a subprocess on a loopback port, for the end-to-end tests.

Readiness is waited for as long as start-up makes progress: the deadline restarts whenever
`/v1/ready` reports a new phase (building the model, opening the store, ingesting...), so a busy
machine slows the start without failing it, while a start that stalls in one phase, exits, or
reports `failed` fails the test with the server's log. A server that did not come up is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrieval.settings import PROJECT_ROOT

STALL_S = 300.0
"""How long start-up may stay in one phase before the test gives up on it."""


class ApiProcess:
    """One `search-api serve` process on a loopback port."""

    def __init__(self, data_dir: Path, port: int, log: Path, env: dict[str, str] | None = None):
        self.data_dir, self.port, self.log = data_dir, port, log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the process; do not wait for it."""
        env = {**os.environ, "SEARCH_DATA_DIR": str(self.data_dir), **self.env}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "search_api.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def readiness(self) -> tuple[int, dict[str, Any]] | None:
        """`/v1/ready` as (status, body), or None while nothing answers."""
        try:
            reply = httpx.get(f"{self.url}/v1/ready", timeout=5, trust_env=False)
        except httpx.TransportError:
            return None
        return reply.status_code, reply.json()

    def wait_until(self, done: Callable[[int, dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Poll `/v1/ready` until `done(status, body)`; fail on exit, `failed`, or a stalled phase."""
        if self.proc is None:
            raise RuntimeError("launch() first")
        phase, since = None, time.monotonic()
        while True:
            if self.proc.poll() is not None:
                self._fail(f"server exited with {self.proc.returncode} before {what}")
            seen = self.readiness()
            if seen is not None:
                status, body = seen
                if done(status, body):
                    return body
                detail = str(body.get("detail") or "")
                if detail.startswith("engine is failed"):
                    self._fail(f"start-up failed before {what}: {detail}")
                current = detail.split(":")[0]
                if current != phase:
                    phase, since = current, time.monotonic()
            if time.monotonic() - since > STALL_S:
                self._fail(f"no progress for {STALL_S:.0f} s in phase {phase!r} before {what}")
            time.sleep(0.25)

    def start(self) -> None:
        """Launch and wait until `/v1/ready` answers 200."""
        self.launch()
        self.wait_until(lambda status, _: status == 200, "ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _fail(self, message: str) -> None:
        self.stop()  # never leave a half-started server behind
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        pytest.fail(f"{message}\n{tail}")


def search_uncached(url: str, query: str) -> httpx.Response:
    """One hybrid search with the cache off: an answer remembered from before an outage must not hide it."""
    return httpx.post(f"{url}/v1/search", json={"query": query, "cache": False}, timeout=30)


def assert_searches_again(url: str, ids_before: list[str], *, attempts: int, after: str) -> None:
    """Once Milvus is back: searches answer 503 `store_unavailable` until they answer again, with
    the same hits as before the outage, and `/v1/ready` reports the circuit closed."""
    t0 = time.perf_counter()
    for _ in range(attempts):  # the circuit probes again within a second; allow a slow reconnect
        again = search_uncached(url, "断剑客")
        if again.status_code == 200:
            break
        assert again.json()["code"] == "store_unavailable", again.text
        time.sleep(0.5)
    print(f"searching again {time.perf_counter() - t0:.2f} s after {after}")
    assert again.status_code == 200, again.text
    assert [h["id"] for h in again.json()["hits"]] == ids_before
    recovered = httpx.get(f"{url}/v1/ready", timeout=30)
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["store"]["circuit"] == "closed"
