"""A circuit breaker and a rate-limited warning, so a dead backend costs nothing per request.

With Redis down every call would otherwise wait for a connect timeout and log a line. The breaker
opens after `failure_threshold` consecutive failures; while open, calls are refused at once;
after `cooldown_s` one probe call is let through (half-open) and its outcome closes or re-opens it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)


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
