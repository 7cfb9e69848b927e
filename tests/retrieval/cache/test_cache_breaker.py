"""The circuit breaker and the rate-limited warning."""

from __future__ import annotations

import logging

import pytest

from retrieval.cache.config import CacheConfig
from retrieval.util import BreakerState, CircuitBreaker, RateLimitedWarning


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=5.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now = 4.9
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.state is BreakerState.HALF_OPEN  # type: ignore[comparison-overlap]  # the clock moved
    assert breaker.allow()  # the single probe
    assert not breaker.allow()  # everyone else waits for its outcome
    breaker.record_failure()  # probe failed: open for another cooldown
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.snapshot()["times_opened"] == 1


@pytest.mark.unit
def test_a_cancelled_probe_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1.0, clock=clock)
    breaker.record_failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


@pytest.mark.unit
def test_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = logging.getLogger("test.cache.warnings")
    warn = RateLimitedWarning(log, interval_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.cache.warnings"):
        for _ in range(50):
            warn("redis %s failed", "get")
        clock.now = 10.0
        warn("redis %s failed", "put")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["redis get failed", "redis put failed (49 similar warnings suppressed)"]


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        {"ttl_s": 0},
        {"semantic_threshold": 1.5},
        {"max_entries": 0},
        {"socket_timeout_s": float("nan")},
        {"breaker_failures": 0},
        {"redis_url": "localhost:6379"},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        CacheConfig(**bad)  # type: ignore[arg-type]
