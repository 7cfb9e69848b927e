"""`milvus-lite server` on a loopback port: a Milvus-protocol gRPC server for the server-path tests.

Milvus Lite 3.x ships a gRPC server speaking the Milvus protocol (HNSW, INVERTED scalar indexes,
aliases, collection properties). It is a re-implementation over FAISS and Arrow, not Milvus
itself, and a single process, not a cluster; what it shows is that the server code path (index
choice, alias swaps, reconnecting) works through pymilvus against something that is not the
embedded Lite file.

It runs through `uv tool run` in an environment of its own (`tests/milvus_lite_server.txt`, exact
versions from PyPI), so the project's embedded milvus-lite pin is untouched. The first run
downloads that environment; readiness is polled with a generous deadline for that reason, and a
server that does not come up fails the test that needs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from retrieval.settings import PROJECT_ROOT

REQUIREMENTS = PROJECT_ROOT / "tests" / "milvus_lite_server.txt"
START_DEADLINE_S = 240.0
"""Covers a cold start on a busy machine; under pytest-timeout's 300 s, so the failure says why.

`.ci/run` downloads the server's environment (about 100 MB) before the tests; a local first run
downloads it here, within this deadline.
"""


def server_program() -> list[str]:
    """`milvus-lite` run by uv in the server's own environment (built from PyPI on first use)."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: it runs milvus-lite server in its own environment")
    return [
        uv,
        "tool",
        "run",
        # The test's own interpreter: uv never fetches one for the server's environment.
        "--python",
        sys.executable,
        "--from",
        "milvus-lite==3.2.2",
        "--with-requirements",
        str(REQUIREMENTS),
        "milvus-lite",
    ]


def server_command(data_dir: Path, port: int) -> list[str]:
    """The command line that serves `data_dir` on 127.0.0.1:`port` (also shown in the README)."""
    return [
        *server_program(),
        "server",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


class MilvusLiteServer:
    """One `milvus-lite server` process over a data folder; stop and start again on the same port."""

    def __init__(self, data_dir: Path, port: int, log: Path):
        self.data_dir, self.port, self.log = data_dir, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Launch and wait until it answers a Milvus call; fail with its log if it does not."""
        env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                server_command(self.data_dir, self.port),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: uv and the server stop together
            )
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"milvus-lite server exited with {self.proc.returncode}")
            if self.answers():
                return
            time.sleep(0.5)
        self._fail(f"milvus-lite server did not answer within {START_DEADLINE_S:.0f} s")

    def answers(self) -> bool:
        """Whether a Milvus call (list collections) succeeds now."""
        try:
            client = MilvusClient(uri=self.uri, timeout=2.0)
        except MilvusException:
            return False
        try:
            client.list_collections(timeout=2.0)
            return True
        except MilvusException:
            return False
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process group (uv and the server under it)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def _fail(self, message: str) -> None:
        self.stop(signal.SIGKILL)
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        pytest.fail(f"{message}\n{tail}")


if __name__ == "__main__":
    # `.ci/run`: build the server's environment ahead of the tests.
    subprocess.run([*server_program(), "server", "--help"], check=True, stdout=subprocess.DEVNULL)
