"""Cache counters: one plain-Python tally that both `metrics()` and Prometheus read.

Prometheus sees them through a custom collector rather than `Counter` objects, so there is one
source of truth and no module-level metric state: each cache registers on the registry it is
given (a private one by default), and several caches in one test process never collide.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, get_args

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from retrieval.cache.protocol import GuardReason, Tier

_NAMESPACE = "search_cache"


class CacheMetrics:
    """Hits per tier, misses per tier, guard rejections by reason, errors by operation, time saved."""

    def __init__(
        self,
        backend: str,
        registry: CollectorRegistry | None = None,
        gauges: Callable[[], dict[str, float]] | None = None,
    ):
        self.backend = backend
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.guard_rejections: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.saved_ms = 0.0
        self.puts = 0
        self.dropped_puts: Counter[str] = Counter()
        self.short_circuited = 0
        # Live values (entries held, breaker state) are read from the cache when scraped.
        self._gauges = gauges or dict
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)

    def hit(self, tier: Tier, saved_ms: float) -> None:
        """Count a hit and the computation time it saved."""
        self.hits[tier] += 1
        self.saved_ms += max(saved_ms, 0.0)

    def miss(self, tier: Tier) -> None:
        """Count a miss of one tier."""
        self.misses[tier] += 1

    def rejected(self, reason: GuardReason) -> None:
        """Count a semantic candidate refused by a guard."""
        self.guard_rejections[reason] += 1

    def error(self, operation: str) -> None:
        """Count a backend failure (timeout, connection refused, error reply)."""
        self.errors[operation] += 1

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain values."""
        return {
            "exact_hits": self.hits["exact"],
            "canonical_hits": self.hits["canonical"],
            "semantic_hits": self.hits["semantic"],
            "exact_misses": self.misses["exact"],
            "canonical_misses": self.misses["canonical"],
            "semantic_misses": self.misses["semantic"],
            "guard_rejections": dict(self.guard_rejections),
            "errors": dict(self.errors),
            "errors_total": sum(self.errors.values()),
            "short_circuited": self.short_circuited,
            "saved_ms": round(self.saved_ms, 3),
            "puts": self.puts,
            "dropped_puts": dict(self.dropped_puts),
        }

    def describe(self) -> Iterable[Metric]:
        """Metric names, so a registry can detect clashes without collecting."""
        return self._families(with_values=False)

    def collect(self) -> Iterable[Metric]:
        """Current values for a Prometheus scrape."""
        return self._families(with_values=True)

    def _families(self, *, with_values: bool) -> list[Metric]:
        backend = [self.backend]
        hits = CounterMetricFamily(f"{_NAMESPACE}_hits", "Cache hits by tier", labels=["backend", "tier"])
        misses = CounterMetricFamily(
            f"{_NAMESPACE}_misses", "Cache misses by tier", labels=["backend", "tier"]
        )
        rejections = CounterMetricFamily(
            f"{_NAMESPACE}_guard_rejections",
            "Semantic candidates above the threshold refused by a guard or by missing evidence",
            labels=["backend", "reason"],
        )
        errors = CounterMetricFamily(
            f"{_NAMESPACE}_errors", "Backend failures by operation", labels=["backend", "operation"]
        )
        saved = CounterMetricFamily(
            f"{_NAMESPACE}_saved_seconds", "Search time saved by hits", labels=["backend"]
        )
        gauges = GaugeMetricFamily(f"{_NAMESPACE}_state", "Live cache state", labels=["backend", "name"])
        if with_values:
            for tier in get_args(Tier):
                hits.add_metric([*backend, tier], self.hits[tier])
                misses.add_metric([*backend, tier], self.misses[tier])
            for reason in get_args(GuardReason):
                rejections.add_metric([*backend, reason], self.guard_rejections[reason])
            for operation, count in sorted(self.errors.items()):
                errors.add_metric([*backend, operation], count)
            saved.add_metric(backend, self.saved_ms / 1000.0)
            for name, value in sorted(self._gauges().items()):
                gauges.add_metric([*backend, name], value)
        return [hits, misses, rejections, errors, saved, gauges]
