"""Prometheus metrics: one registry per app, exposed at `/metrics`."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from search_api.state import AppState


class MetricsController(Controller):
    """`GET /metrics` in the Prometheus text format."""

    path = "/metrics"
    include_in_schema = False

    @get(operation_id="metrics", summary="Prometheus metrics")
    async def metrics(self, serving: NamedDependency[AppState]) -> Response[bytes]:
        """Counters and histograms of this process."""
        registry: CollectorRegistry = serving.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
