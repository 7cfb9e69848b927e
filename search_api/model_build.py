"""`serve`'s first model build, in a child process, while the server imports and opens its store.

A first start has two long jobs that need nothing of each other: building the model (graph,
INT8 quantisation: seconds of one core) and importing the web stack and the Milvus client
(seconds of the other). Run in one process they queue behind the GIL; here the build runs in a
child started before the server's imports.

The child claims the build lock before it says anything, then writes one line to its stdout:
``building`` (it holds the lock) or ``skip`` (nothing to build, or another process is building).
The engine's own `ensure_built_model` runs only after that line (`wait_claimed`), so it always
finds either the finished build or the child's lock, which it waits on; if the child fails, the
lock is released and the engine builds, and reports the error, itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from retrieval.settings import Settings

# Named, not __name__: the child runs as __main__, and its lines should say where they come from.
logger = logging.getLogger("search_api.model_build")

BUILDING: Final = "building"
SKIP: Final = "skip"
_PARENT_POLL_S: Final = 0.5


class ModelBuild:
    """The child that builds the model for a first start (parent side)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._claimed: str | None = None

    @classmethod
    def start(
        cls, settings: Settings, config: Path | None, log_level: str, log_format: str
    ) -> ModelBuild | None:
        """Start the child when the configured local model has no build folder yet, else None."""
        if settings.remote_encoder is not None or settings.model_build_dir.exists():
            return None  # a remote encoder builds nothing; an existing build is the engine's to check
        argv = [
            sys.executable,
            "-m",
            "search_api.model_build",
            "--log-level",
            log_level,
            "--log-format",
            log_format,
        ]
        if config is not None:
            argv += ["--config", str(config)]
        # stderr is inherited: the child's log lines join the server's, in the same format.
        return cls(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))

    def wait_claimed(self) -> str:
        """Block until the child has claimed the build (or declined it): its word, or "" if it died."""
        if self._claimed is None and self._proc.stdout is not None:
            self._claimed = self._proc.stdout.readline().strip()
        return self._claimed or ""

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the child to end; its exit status."""
        return self._proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Stop the child if it is still building (the server is shutting down)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _exit_with_parent() -> None:
    """End this process when the server that started it is gone (even killed with SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        # A half-written build is left in a temp folder that the next build removes.
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _say(word: str) -> None:
    print(word, flush=True)
    # The pipe carries that one word; anything a library prints later goes to stderr, so the
    # child never blocks on a pipe nobody reads.
    os.dup2(2, 1)


def main(argv: Sequence[str] | None = None) -> int:
    """The child: claim the build lock, say so, build."""
    parser = argparse.ArgumentParser(description="build the configured model for `search-api serve`")
    parser.add_argument("--config", default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="json")
    args = parser.parse_args(argv)

    from search_api.settings import load_api_settings
    from search_api.telemetry import configure_logging

    configure_logging(args.log_level, args.log_format)
    _exit_with_parent()
    try:
        settings = load_api_settings(Path(args.config) if args.config else None).engine
        from retrieval.collections.specs import ensure_built_model, model_needs_build
        from retrieval.encoders.build import hold_build_lock

        fd = hold_build_lock(settings.model_build_dir) if model_needs_build(settings) else None
    except Exception:
        logger.exception("model build: could not start; the server builds the model itself")
        _say(SKIP)
        return 1
    if fd is None:
        _say(SKIP)
        return 0
    _say(BUILDING)
    try:
        ensure_built_model(settings, logger.info, lock_held=True)
    except Exception:
        logger.exception("model build failed; the server tries again and reports the error")
        return 1
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
