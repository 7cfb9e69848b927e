"""Helpers every role may use: a circuit breaker, atomic JSON records, clocks and digests.

Imports no role. A dead backend (Redis, Milvus) must cost nothing per request, so each client
guards its calls with one `CircuitBreaker`; state files (pointers, checkpoints, statistics) must
survive a crash whole, so they are written with `write_json_atomic`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

_R = TypeVar("_R")

logger = logging.getLogger(__name__)

# -- circuit breaker --------------------------------------------------------------------------


class BreakerState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after a cooldown -> closed on success.

    Single-threaded by design (one event loop): no locking.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 5.0,
        *,
        name: str = "cache",
        clock: Callable[[], float] = time.monotonic,
    ):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.name = name
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cooldown has passed reads as half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the backend now (claims the single half-open probe)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if self._state is BreakerState.OPEN:  # cooldown just passed: this call is the probe
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        if self._state is not BreakerState.CLOSED:
            logger.info("%s backend answered again; circuit closed", self.name)
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        """A call failed: open after enough consecutive failures, or at once when probing."""
        self._failures += 1
        self._probe_in_flight = False
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            if self._state is BreakerState.CLOSED:
                logger.warning(
                    "%s backend failed %d times in a row; circuit open for %.1f s",
                    self.name,
                    self._failures,
                    self.cooldown_s,
                )
                self.opened_count += 1
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()

    def abandon(self) -> None:
        """A call ended without an outcome (cancelled): free the probe slot so another can probe."""
        self._probe_in_flight = False

    def snapshot(self) -> dict[str, Any]:
        """State and settings, for status endpoints."""
        return {
            "state": self.state.value,
            "consecutive_failures": self._failures,
            "times_opened": self.opened_count,
            "failure_threshold": self.failure_threshold,
            "cooldown_s": self.cooldown_s,
        }


class RateLimitedWarning:
    """Logs the first failure, then at most one line per interval with a count of the ones skipped."""

    def __init__(
        self, log: logging.Logger, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self._log = log
        self.interval_s = interval_s
        self._clock = clock
        self._last = -float("inf")
        self.suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        """Log `message % args` unless a line was logged less than `interval_s` ago."""
        now = self._clock()
        if now - self._last < self.interval_s:
            self.suppressed += 1
            return
        if self.suppressed:
            message += " (%d similar warnings suppressed)"
            args = (*args, self.suppressed)
        self._log.warning(message, *args)
        self._last = now
        self.suppressed = 0


# -- atomic JSON records and clocks ----------------------------------------------------------


def utc_now() -> str:
    """The current UTC time in ISO 8601, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def read_json_record(path: Path, record: Callable[..., _R], what: str) -> _R | None:
    """The record `write_json_atomic` left in `path` (fields as keyword arguments), None if absent.

    Raises ValueError naming `what` and the file when it cannot be read back into `record`.
    """
    if not path.exists():
        return None
    try:
        return record(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} {path} is unreadable ({exc}); delete it to start over") from exc


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Replace `path` with `payload` so a reader sees the old file or the new one, never a torn one.

    Written to a temporary file in the same folder, flushed to disk, renamed over the target, and
    the folder synced so the rename itself survives a power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, ensure_ascii=False, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
