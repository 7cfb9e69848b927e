"""Routing: the table turns intents into weights, filters, boosts and limits; fallbacks and guards."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.errors import UnknownIntent
from retrieval.routing.classifier import DenseLayer, IntentClassifier
from retrieval.routing.router import (
    Router,
    apply_kind_boosts,
    load_router,
    load_routing_table,
    parse_routing_table,
)
from retrieval.settings import PROJECT_ROOT
from retrieval.types import FusedHit, SearchFilter, SearchMode, SourceEvidence, StoredHit

pytestmark = pytest.mark.unit

TABLE = """
[routing]
threshold = 0.6
boost_mode = "multiply"

[default]
dense_weight = 1.0
sparse_weight = 1.0

[intents.character]
boost = { character = 1.5 }
dense_candidates = 50

[intents.quote]
dense_weight = 0.25
sparse_weight = 2.0
kinds = ["chapter"]
sparse_candidates = 300

[intents.lore]
dense_weight = 1.0
sparse_weight = 0.0

[intents.out_of_scope]
out_of_scope = true
min_confidence = 0.9
"""

LABELS = ["character", "quote", "lore", "out_of_scope"]


def one_hot_classifier(scale: float = 10.0) -> IntentClassifier:
    """Vector e_i -> intent i with a confidence that grows with `scale`."""
    weight = np.eye(4, dtype=np.float32) * scale
    return IntentClassifier([DenseLayer(weight, np.zeros(4, np.float32))], LABELS, "test-model")


def e(i: int, other: int | None = None, mix: float = 0.0) -> np.ndarray:
    v = np.zeros(4, np.float32)
    v[i] = 1.0 - mix
    if other is not None:
        v[other] = mix
    return v


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    path = tmp_path / "routing.toml"
    path.write_text(TABLE, encoding="utf-8")
    return path


@pytest.fixture
def router(table_path: Path) -> Router:
    return Router(
        load_routing_table(table_path), one_hot_classifier(), entities=lambda t: {"沈青崖"} & {t[:3]}
    )


def test_classified_intent_applies_its_weights_boosts_and_limits(router: Router) -> None:
    route = router.route(e(0), "沈青崖的师父是谁")
    assert route.intent == "character" and route.predicted == "character"
    assert route.confidence > 0.99
    assert route.weights == {"dense": 1.0, "sparse": 1.0}
    assert dict(route.kind_boosts) == {"character": 1.5} and route.kinds == ()
    assert route.candidates == 50 and route.mode is SearchMode.HYBRID
    assert not route.out_of_scope and "character" in route.reason


def test_forced_intent_overrides_the_classifier(router: Router) -> None:
    route = router.route(e(0), "沈青崖", force="quote")
    assert route.intent == "quote" and route.confidence == 1.0 and route.reason == "forced by the request"
    assert route.weights == {"dense": 0.25, "sparse": 2.0}
    where = route.search_filter(SearchFilter.build(metadata={"realm": "筑基境"}))
    assert where == SearchFilter.build(kinds=["chapter"], metadata={"realm": "筑基境"})
    assert route.candidates == 300 and route.mode is SearchMode.HYBRID


def test_a_callers_own_kind_filter_wins_over_the_route(router: Router) -> None:
    route = router.route(force="quote")
    assert route.search_filter(SearchFilter.build(kinds=["lore"])).kinds == ("lore",)


def test_routing_off_and_below_threshold_take_the_default_route(router: Router) -> None:
    off = router.route(e(1), "x", force="none")
    assert off.intent == "none" and off.weights == {"dense": 1.0, "sparse": 1.0} and off.kinds == ()
    unsure = router.route(e(1, other=0, mix=0.48), "一句拿不准的话")
    assert unsure.intent == "default" and unsure.predicted == "quote"
    assert 0.5 < unsure.confidence < 0.6 and "below 0.60" in unsure.reason
    assert unsure.kinds == () and unsure.kind_boosts == () and unsure.weights == {"dense": 1.0, "sparse": 1.0}


def test_zero_weight_skips_that_path(router: Router) -> None:
    assert router.route(e(2)).mode is SearchMode.DENSE


def test_out_of_scope_is_flagged_with_a_reason(router: Router) -> None:
    route = router.route(e(3), "明天北京会下雨吗")
    assert route.out_of_scope and route.intent == "out_of_scope"
    assert "out of scope" in route.reason
    assert route.to_json()["out_of_scope"] is True


def test_out_of_scope_needs_its_own_higher_confidence(table_path: Path) -> None:
    router = Router(load_routing_table(table_path), one_hot_classifier(scale=2.0))
    route = router.route(e(3), "今天天气怎么样")
    assert 0.6 < route.confidence < 0.9
    assert route.intent == "default" and not route.out_of_scope


def test_out_of_scope_is_overruled_when_the_query_names_a_kb_entity(router: Router) -> None:
    route = router.route(e(3), "沈青崖今天天气怎么样")
    assert not route.out_of_scope and route.intent == "default" and "沈青崖" in route.reason


def test_unknown_forced_intent_and_missing_vector_are_errors(router: Router) -> None:
    with pytest.raises(UnknownIntent, match="bogus"):
        router.route(e(0), force="bogus")
    with pytest.raises(ValueError, match="query vector"):
        router.route(None, "沈青崖")


def test_router_without_classifier_or_disabled_takes_default(table_path: Path) -> None:
    table = load_routing_table(table_path)
    assert Router(table).route(e(0)).intent == "default"
    disabled = parse_routing_table({**_raw(table_path), "routing": {"enabled": False}})
    assert (
        Router(disabled, one_hot_classifier()).route(e(0)).reason == "routing disabled in the routing table"
    )


def test_every_classifier_intent_needs_a_route(table_path: Path) -> None:
    raw = _raw(table_path)
    del raw["intents"]["lore"]
    with pytest.raises(ValueError, match="lore"):
        Router(parse_routing_table(raw), one_hot_classifier())


def _raw(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"extra": {}}, "unknown section"),
        ({"routing": {"threshold": 1.5}}, "threshold"),
        ({"routing": {"treshold": 0.5}}, "unknown key"),
        ({"routing": {"boost_mode": "power"}}, "boost_mode"),
        ({"routing": {"precision": "int4"}}, "precision"),
        ({"default": {"out_of_scope": True}}, "default route"),
        ({"intents": {"x": {"dense_weight": -1}}}, "dense_weight"),
        ({"intents": {"x": {"dense_weight": True}}}, "expected a number"),
        ({"intents": {"x": {"dense_weight": 0, "sparse_weight": 0}}}, "both be 0"),
        ({"intents": {"x": {"kinds": ["Character"]}}}, "invalid kind"),
        ({"intents": {"x": {"kinds": []}}}, "non-empty list"),
        ({"intents": {"x": {"kinds": ["event"], "boost": {"event": 1.2}}}}, "not both"),
        ({"intents": {"x": {"boost": {"event": 0}}}}, "factor of 0"),
        ({"intents": {"x": {"boost": {"event": "big"}}}}, "expected a number"),
        ({"intents": {"x": {"sparse_candidates": 0}}}, "sparse_candidates"),
        ({"intents": {"x": {"weight": 1.0}}}, "unknown key"),
        ({"intents": {"x": {"out_of_scope": True, "kinds": ["lore"]}}}, "out_of_scope"),
        ({"intents": {"default": {}}}, "intent names"),
        ({"intents": {}}, "at least one"),
    ],
)
def test_bad_tables_are_refused(patch: dict[str, Any], message: str) -> None:
    raw: dict[str, Any] = {"routing": {}, "default": {}, "intents": {"lore": {}}}
    for key, value in patch.items():
        if key == "intents" and value:
            raw["intents"] = {**raw["intents"], **value}
        else:
            raw[key] = value
    with pytest.raises(ValueError, match=message):
        parse_routing_table(raw)


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[routing\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.toml"):
        load_routing_table(path)


def test_the_shipped_table_loads_and_covers_the_trained_intents() -> None:
    table = load_routing_table(PROJECT_ROOT / "config" / "routing.toml")
    assert {"name", "character", "quote", "out_of_scope", "lore"} <= set(table.intents)
    assert table.routes["out_of_scope"].out_of_scope
    assert table.routes["quote"].sparse_weight > table.routes["quote"].dense_weight
    assert table.default.dense_weight == table.default.sparse_weight == 1.0 and not table.default.kinds


def test_load_router_without_a_trained_model_takes_the_default_route(
    table_path: Path, tmp_path: Path
) -> None:
    router = load_router(table_path, model_id="m", base_dir=tmp_path)
    assert router.classifier is None and router.route(e(0)).intent == "default"


def hit(chunk_id: str, kind: str, score: float) -> FusedHit:
    return FusedHit(
        StoredHit(chunk_id, score, doc_id=chunk_id, kind=kind),
        score,
        {"dense": SourceEvidence(1, score, score)},
    )


def test_kind_boosts_reorder_deterministically() -> None:
    hits = [
        hit("a", "event", 0.030),
        hit("b", "character", 0.028),
        hit("c", "lore", 0.028),
        hit("d", "character", 0.010),
    ]
    boosted = apply_kind_boosts(hits, {"character": 1.2})
    assert [h.hit.id for h in boosted] == ["b", "a", "c", "d"]
    assert boosted[0].score == pytest.approx(0.0336) and boosted[0].sources == hits[1].sources
    assert boosted[2] is hits[2]  # untouched hits are passed through as they are
    added = apply_kind_boosts(hits, {"lore": 0.005}, mode="add")
    assert [h.hit.id for h in added] == ["c", "a", "b", "d"]
    # Equal boosted scores keep the fused order.
    tied = apply_kind_boosts([hit("x", "lore", 0.02), hit("y", "lore", 0.02)], {"lore": 2.0})
    assert [h.hit.id for h in tied] == ["x", "y"]
    assert apply_kind_boosts(hits, {}) == hits
    with pytest.raises(ValueError, match="boost mode"):
        apply_kind_boosts(hits, {"lore": 1.1}, mode="pow")


def test_route_rescore_uses_its_boosts(router: Router) -> None:
    hits = [hit("a", "event", 0.030), hit("b", "character", 0.028)]
    assert [h.hit.id for h in router.route(e(0)).rescore(hits)] == ["b", "a"]
    assert [h.hit.id for h in router.route(force="none").rescore(hits)] == ["a", "b"]
