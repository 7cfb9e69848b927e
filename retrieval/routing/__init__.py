"""Intent classification on the query vector and the routing it drives (weights, kinds, limits)."""

from __future__ import annotations

from retrieval.errors import ModelMismatch, UnknownIntent
from retrieval.routing.classifier import IntentClassifier, IntentPrediction
from retrieval.routing.router import (
    Route,
    Router,
    RouteSpec,
    RoutingTable,
    apply_kind_boosts,
    load_router,
    load_routing_table,
)

__all__ = [
    "IntentClassifier",
    "IntentPrediction",
    "ModelMismatch",
    "Route",
    "RouteSpec",
    "Router",
    "RoutingTable",
    "UnknownIntent",
    "apply_kind_boosts",
    "load_router",
    "load_routing_table",
]
