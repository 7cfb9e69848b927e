"""Query routing: the intent of a query decides fusion weights, kind filter or boosts, and limits.

One call per search, on the query vector the search service already computed
(`retrieval.service.SearchService`)::

    route = router.route(vector, query, force=request_route)     # request_route: None | "none" | intent
    if route.out_of_scope:
        answer with no hits and route.reason                      # no search at all
    retrieve with route.mode, route.search_filter(where), route.weights, route.candidates
    hits = route.rescore(fused)[offset : offset + top_k]         # kind boosts, then page

Retrieval must go at least ``offset + top_k`` deep (better: the route's candidate depth)
because boosts re-order the fused list and must see it before paging.

Decisions, in order:

1. ``force="none"``: routing off, the default route (plain hybrid).
2. ``force="<intent>"``: that intent's route, confidence 1.0 (unknown intent: `UnknownIntent`).
3. routing disabled in the table, or no classifier: the default route.
4. the classifier's top intent, if its probability reaches the intent's ``min_confidence`` (else
   the table's ``threshold``); otherwise the default route.
5. an ``out_of_scope`` prediction for a query that names a KB entity (when the router has an
   entity finder) is overruled: the default route runs. Dropping an in-domain query costs far more
   than searching an off-topic one, so the guard errs towards searching.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.errors import UnknownIntent
from retrieval.routing.classifier import IntentClassifier, Precision
from retrieval.types import KIND_PATTERN, FusedHit, SearchFilter, SearchMode

BOOST_MODES = ("multiply", "add")
RESERVED_NAMES = frozenset({"default", "none"})
MAX_CANDIDATES = 1000
ROUTE_OFF = "none"


# -- kind boosts -------------------------------------------------------------------------------


def apply_kind_boosts(
    hits: Sequence[FusedHit], boosts: Mapping[str, float], mode: str = "multiply"
) -> list[FusedHit]:
    """Re-score fused hits by their kind and re-order them; a pure function.

    * ``multiply``: ``score * boosts[kind]`` (kinds not listed keep factor 1). With RRF scores,
      factor f lets a hit of the boosted kind at fused score s pass any other hit below ``f * s``.
    * ``add``: ``score + boosts[kind]``, in fused-score units (one RRF contribution at rank r is
      ``w / (k + r)``, so with k = 60 an addition of 0.002 is worth a few ranks near the top).

    Ordering is deterministic: by boosted score descending, ties kept in the input order (which
    fusion already made deterministic). Each hit keeps its per-retriever evidence; only `score`
    changes.
    """
    if mode not in BOOST_MODES:
        raise ValueError(f"boost mode must be one of {BOOST_MODES}, not {mode!r}")
    if not boosts:
        return list(hits)
    rescored: list[tuple[float, int, FusedHit]] = []
    for position, fused in enumerate(hits):
        boost = boosts.get(fused.hit.kind)
        if boost is None:
            score = fused.score
        else:
            score = fused.score * boost if mode == "multiply" else fused.score + boost
        rescored.append((score, position, fused if score == fused.score else replace(fused, score=score)))
    rescored.sort(key=lambda item: (-item[0], item[1]))
    return [fused for _, _, fused in rescored]


# -- routes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """How one query is searched (or not)."""

    intent: str
    """The route applied: an intent name, ``"default"`` (fallback) or ``"none"`` (routing off)."""
    confidence: float
    """Classifier probability of `predicted` (1.0 when forced, 0.0 when nothing was classified)."""
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    kinds: tuple[str, ...] = ()
    """Hard filter: only these kinds are searched (empty: no filter)."""
    kind_boosts: tuple[tuple[str, float], ...] = ()
    """Post-fusion re-scoring per kind (see `apply_kind_boosts`)."""
    boost_mode: str = "multiply"
    dense_candidates: int | None = None
    sparse_candidates: int | None = None
    reason: str = ""
    out_of_scope: bool = False
    predicted: str | None = None
    """The classifier's top intent, also when it was not applied (below threshold, overruled)."""

    @property
    def weights(self) -> dict[str, float]:
        """Fusion weights for `WeightedRRF.fuse`."""
        return {"dense": self.dense_weight, "sparse": self.sparse_weight}

    @property
    def candidates(self) -> int | None:
        """One retrieval depth for both paths (retrieval takes one): the larger limit."""
        limits = [c for c in (self.dense_candidates, self.sparse_candidates) if c is not None]
        return max(limits) if limits else None

    @property
    def mode_name(self) -> str:
        """'hybrid', or 'dense'/'sparse' when the other path's weight is 0 (no point running it)."""
        if self.dense_weight == 0:
            return "sparse"
        if self.sparse_weight == 0:
            return "dense"
        return "hybrid"

    @property
    def mode(self) -> SearchMode:
        """`mode_name` as a `SearchMode`."""
        return SearchMode(self.mode_name)

    def search_filter(self, where: SearchFilter | None = None) -> SearchFilter:
        """The caller's filter plus this route's kinds, unless the caller already chose kinds."""
        base = where or SearchFilter()
        if not self.kinds or base.kinds:
            return base
        return replace(base, kinds=tuple(sorted(self.kinds)))

    def rescore(self, hits: Sequence[FusedHit]) -> list[FusedHit]:
        """Fused hits re-ordered by this route's kind boosts (unchanged when it has none)."""
        return apply_kind_boosts(hits, dict(self.kind_boosts), self.boost_mode)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (API responses, logs, eval runs)."""
        return {
            "intent": self.intent,
            "predicted": self.predicted,
            "confidence": round(self.confidence, 4),
            "weights": self.weights,
            "kinds": list(self.kinds),
            "kind_boosts": dict(self.kind_boosts),
            "candidates": self.candidates,
            "out_of_scope": self.out_of_scope,
            "reason": self.reason,
        }


# -- routing table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    """One row of the routing table."""

    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    kinds: tuple[str, ...] = ()
    boosts: tuple[tuple[str, float], ...] = ()
    dense_candidates: int | None = None
    sparse_candidates: int | None = None
    min_confidence: float | None = None
    out_of_scope: bool = False
    description: str = ""

    def route(
        self, intent: str, confidence: float, boost_mode: str, reason: str, predicted: str | None
    ) -> Route:
        """This row applied to a query."""
        return Route(
            intent=intent,
            confidence=confidence,
            dense_weight=self.dense_weight,
            sparse_weight=self.sparse_weight,
            kinds=self.kinds,
            kind_boosts=self.boosts,
            boost_mode=boost_mode,
            dense_candidates=self.dense_candidates,
            sparse_candidates=self.sparse_candidates,
            reason=reason,
            out_of_scope=self.out_of_scope,
            predicted=predicted,
        )


@dataclass(frozen=True)
class RoutingTable:
    """Intent -> route, the fallback route and the confidence threshold."""

    routes: Mapping[str, RouteSpec]
    default: RouteSpec = field(default_factory=RouteSpec)
    threshold: float = 0.5
    boost_mode: str = "multiply"
    enabled: bool = True
    model_dir: str = ""
    precision: Precision = "int8"

    @property
    def intents(self) -> tuple[str, ...]:
        """Intent names in table order."""
        return tuple(self.routes)


_TOP_KEYS = {"routing", "default", "intents"}
_ROUTING_KEYS = {"enabled", "threshold", "boost_mode", "model_dir", "precision"}
_SPEC_KEYS = {
    "dense_weight",
    "sparse_weight",
    "kinds",
    "boost",
    "dense_candidates",
    "sparse_candidates",
    "min_confidence",
    "out_of_scope",
    "description",
}
_OUT_OF_SCOPE_KEYS = {"out_of_scope", "min_confidence", "description"}


def _number(value: Any, where: str, *, low: float | None = None, high: float | None = None) -> float:
    # bool is an int subclass; `weight = true` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if (
        not math.isfinite(number)
        or (low is not None and number < low)
        or (high is not None and number > high)
    ):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{where}: {value!r} is outside {bounds}")
    return number


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CANDIDATES:
        raise ValueError(f"{where}: expected an integer in [1, {MAX_CANDIDATES}], got {value!r}")
    return value


def _kind(value: Any, where: str) -> str:
    if not isinstance(value, str) or not KIND_PATTERN.match(value):
        raise ValueError(f"{where}: invalid kind {value!r}")
    return value


def _spec(raw: Any, where: str, boost_mode: str, *, default: bool = False) -> RouteSpec:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table")
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    out_of_scope = raw.get("out_of_scope", False)
    if not isinstance(out_of_scope, bool):
        raise ValueError(f"{where}.out_of_scope: expected true or false")
    if default and ("out_of_scope" in raw or "min_confidence" in raw):
        raise ValueError(f"{where}: the default route cannot be out of scope or have min_confidence")
    if out_of_scope and set(raw) - _OUT_OF_SCOPE_KEYS:
        extra = sorted(set(raw) - _OUT_OF_SCOPE_KEYS)
        raise ValueError(f"{where}: an out_of_scope route runs no search, so {extra} make no sense")
    if "kinds" in raw and "boost" in raw:
        raise ValueError(f"{where}: set either `kinds` (hard filter) or `boost`, not both")

    dense = _number(raw.get("dense_weight", 1.0), f"{where}.dense_weight", low=0.0, high=100.0)
    sparse = _number(raw.get("sparse_weight", 1.0), f"{where}.sparse_weight", low=0.0, high=100.0)
    if dense == 0 and sparse == 0:
        raise ValueError(f"{where}: dense_weight and sparse_weight cannot both be 0")
    kinds_raw = raw.get("kinds", [])
    if not isinstance(kinds_raw, list) or ("kinds" in raw and not kinds_raw):
        raise ValueError(f"{where}.kinds: expected a non-empty list of kinds")
    kinds = tuple(sorted({_kind(k, f"{where}.kinds") for k in kinds_raw}))
    boost_raw = raw.get("boost", {})
    if not isinstance(boost_raw, Mapping) or ("boost" in raw and not boost_raw):
        raise ValueError(f"{where}.boost: expected a non-empty table of kind = factor")
    boosts: list[tuple[str, float]] = []
    for kind, factor in sorted(boost_raw.items()):
        key = f"{where}.boost.{kind}"
        _kind(kind, key)
        if boost_mode == "multiply":
            boosts.append((kind, _number(factor, key, low=0.0, high=100.0)))
            if boosts[-1][1] == 0:
                raise ValueError(f"{key}: a factor of 0 hides the kind; use a lower factor or `kinds`")
        else:
            boosts.append((kind, _number(factor, key, low=-1.0, high=1.0)))
    min_conf = raw.get("min_confidence")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{where}.description: expected text")
    return RouteSpec(
        dense_weight=dense,
        sparse_weight=sparse,
        kinds=kinds,
        boosts=tuple(boosts),
        dense_candidates=None
        if "dense_candidates" not in raw
        else _count(raw["dense_candidates"], f"{where}.dense_candidates"),
        sparse_candidates=None
        if "sparse_candidates" not in raw
        else _count(raw["sparse_candidates"], f"{where}.sparse_candidates"),
        min_confidence=None
        if min_conf is None
        else _number(min_conf, f"{where}.min_confidence", low=0.0, high=1.0),
        out_of_scope=out_of_scope,
        description=description,
    )


def parse_routing_table(data: Mapping[str, Any]) -> RoutingTable:
    """Validate a parsed routing TOML; any unknown key or bad value raises ValueError."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"routing table: unknown section(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    routing = data.get("routing", {})
    if not isinstance(routing, Mapping):
        raise ValueError("[routing]: expected a table")
    unknown = set(routing) - _ROUTING_KEYS
    if unknown:
        raise ValueError(f"[routing]: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ROUTING_KEYS)}")
    enabled = routing.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("[routing].enabled: expected true or false")
    threshold = _number(routing.get("threshold", 0.5), "[routing].threshold", low=0.0, high=1.0)
    boost_mode = routing.get("boost_mode", "multiply")
    if boost_mode not in BOOST_MODES:
        raise ValueError(f"[routing].boost_mode: expected one of {BOOST_MODES}, got {boost_mode!r}")
    model_dir = routing.get("model_dir", "")
    if not isinstance(model_dir, str):
        raise ValueError("[routing].model_dir: expected a path")
    precision = routing.get("precision", "int8")
    if precision not in ("fp32", "int8"):
        raise ValueError(f"[routing].precision: expected 'fp32' or 'int8', got {precision!r}")

    default = _spec(data.get("default", {}), "[default]", boost_mode, default=True)
    intents = data.get("intents", {})
    if not isinstance(intents, Mapping) or not intents:
        raise ValueError("[intents]: expected at least one [intents.<name>] table")
    routes: dict[str, RouteSpec] = {}
    for name, raw in intents.items():
        if name in RESERVED_NAMES or not KIND_PATTERN.match(name):
            raise ValueError(
                f"[intents.{name}]: intent names are lower-case identifiers, not {sorted(RESERVED_NAMES)}"
            )
        routes[name] = _spec(raw, f"[intents.{name}]", boost_mode)
    return RoutingTable(routes, default, threshold, boost_mode, enabled, model_dir, precision)


def load_routing_table(path: Path) -> RoutingTable:
    """Read and validate a routing TOML (see config/routing.toml)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    try:
        return parse_routing_table(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


# -- router ------------------------------------------------------------------------------------

EntityFinder = Callable[[str], Collection[str]]


class Router:
    """Maps a query vector (and optionally its text) to a `Route`."""

    def __init__(
        self,
        table: RoutingTable,
        classifier: IntentClassifier | None = None,
        *,
        entities: EntityFinder | None = None,
    ):
        if classifier is not None:
            missing = [label for label in classifier.labels if label not in table.routes]
            if missing:
                raise ValueError(f"routing table has no route for classifier intent(s) {missing}")
        self.table = table
        self.classifier = classifier
        self._entities = entities

    @property
    def intents(self) -> tuple[str, ...]:
        """Intents a request may force."""
        return self.table.intents

    def _default(
        self, reason: str, *, intent: str = "default", confidence: float = 0.0, predicted: str | None = None
    ) -> Route:
        return self.table.default.route(intent, confidence, self.table.boost_mode, reason, predicted)

    def route(
        self,
        vector: npt.NDArray[np.floating[Any]] | None = None,
        text: str | None = None,
        *,
        force: str | None = None,
    ) -> Route:
        """The route for one query; `force` is the request's `route` field (None, "none" or an intent)."""
        if force is not None:
            if force == ROUTE_OFF:
                return self._default("routing turned off by the request", intent=ROUTE_OFF)
            spec = self.table.routes.get(force)
            if spec is None:
                raise UnknownIntent(f"unknown intent {force!r}; expected one of {[ROUTE_OFF, *self.intents]}")
            return spec.route(force, 1.0, self.table.boost_mode, "forced by the request", force)
        if not self.table.enabled:
            return self._default("routing disabled in the routing table")
        if self.classifier is None:
            return self._default("no intent classifier loaded")
        if vector is None:
            raise ValueError("routing needs the query vector unless a route is forced")
        if text is None and self.classifier.needs_text:
            raise ValueError("this intent head reads the query text too: pass it with the vector")

        prediction = self.classifier.classify(vector, text)
        spec = self.table.routes[prediction.label]
        needed = spec.min_confidence if spec.min_confidence is not None else self.table.threshold
        if prediction.confidence < needed:
            return self._default(
                f"'{prediction.label}' at {prediction.confidence:.2f} is below {needed:.2f}",
                confidence=prediction.confidence,
                predicted=prediction.label,
            )
        if spec.out_of_scope and text is not None and self._entities is not None:
            named = sorted(self._entities(text))
            if named:
                return self._default(
                    f"classified out of scope ({prediction.confidence:.2f}) but names {', '.join(named[:3])}",
                    confidence=prediction.confidence,
                    predicted=prediction.label,
                )
        reason = (
            f"out of scope ({prediction.confidence:.2f}): not about this knowledge base"
            if spec.out_of_scope
            else f"classified '{prediction.label}' ({prediction.confidence:.2f})"
        )
        return spec.route(
            prediction.label, prediction.confidence, self.table.boost_mode, reason, prediction.label
        )


def load_router(
    table_path: Path,
    *,
    model_id: str,
    base_dir: Path,
    entities: EntityFinder | None = None,
    precision: Precision | None = None,
) -> Router:
    """The routing table plus the classifier it names (`model_dir`, relative to `base_dir`: the data folder).

    A table without `model_dir`, or a folder without a trained head, gives a router that always
    takes the default route (forced routes still work); a head trained on another embedding
    model raises `ModelMismatch`.
    """
    table = load_routing_table(table_path)
    classifier = None
    if table.model_dir:
        directory = Path(table.model_dir)
        directory = directory if directory.is_absolute() else base_dir / directory
        if (directory / "meta.json").exists():
            classifier = IntentClassifier.load(
                directory, model_id=model_id, precision=precision or table.precision
            )
    return Router(table, classifier, entities=entities)
