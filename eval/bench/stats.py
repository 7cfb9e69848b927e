"""The one set of summary statistics every benchmark reports: percentiles, latency summaries, runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), `q` in [0, 100]; NaN for no values."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError("percentile must be within [0, 100]")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99 and max of latencies in milliseconds."""
    if not values_ms:
        return {"count": 0}
    return {
        "count": len(values_ms),
        "mean_ms": sum(values_ms) / len(values_ms),
        "p50_ms": percentile(values_ms, 50),
        "p95_ms": percentile(values_ms, 95),
        "p99_ms": percentile(values_ms, 99),
        "max_ms": max(values_ms),
    }


def rounded(summary: Mapping[str, float], digits: int = 3) -> dict[str, float]:
    """A summary with its floats rounded (counts stay integers), for reports."""
    return {k: v if isinstance(v, int) else round(v, digits) for k, v in summary.items()}


def across_runs(runs: Sequence[Mapping[str, float]], key: str) -> dict[str, float]:
    """The median, min and max over runs of one figure (e.g. each run's "p95_ms").

    This machine is noisy: a benchmark reports several runs, and their median is the figure.
    """
    values = [float(run[key]) for run in runs if key in run]
    if not values:
        return {"runs": 0}
    return {"runs": len(values), "median": statistics.median(values), "min": min(values), "max": max(values)}
