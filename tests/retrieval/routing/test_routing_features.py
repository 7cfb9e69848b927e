"""Query text features of the intent head: KB entity kinds and hashed cue n-grams."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.routing.classifier import FEATURES_FILE, IntentClassifier
from retrieval.routing.features import QueryFeatures
from retrieval.routing.router import Router, parse_routing_table
from retrieval.training.intents.train import TrainConfig, train_ensemble

pytestmark = pytest.mark.unit

DIM = 8

NAMES = {
    "沈青崖": "character",
    "青崖": "character",
    "顾长庚": "character",
    "温照雪": "character",
    "陆知薇": "character",
    "栖岚剑宗": "faction",
    "玄霜宫": "faction",
    "青冥书院": "faction",
    "天机观": "faction",
    "断尘剑": "item",
}


def features(buckets: int = 64) -> QueryFeatures:
    return QueryFeatures.from_names(list(NAMES), list(NAMES.values()), buckets=buckets)


def test_names_are_matched_longest_first_and_counted_by_kind() -> None:
    qf = features(buckets=0)
    spans = qf.entities("沈青崖拜入栖岚剑宗")
    assert [(s.start, s.end, s.kind) for s in spans] == [(0, 3, "character"), (5, 9, "faction")]
    row = qf(["沈青崖拜入栖岚剑宗"])[0]
    assert qf.kinds == ("character", "faction", "item")
    assert row[:3].tolist() == [1.0, 1.0, 0.0]  # one character, one faction, no item
    assert row[3] == pytest.approx(7 / 9)  # the names cover 7 of the 9 characters


def test_a_bare_name_covers_the_whole_query_and_a_question_does_not() -> None:
    qf = features(buckets=0)
    coverage = qf(["玄霜宫", "玄霜宫的宫主是谁", "今天天气怎么样"])[:, -1]
    assert coverage[0] == 1.0
    assert 0.0 < coverage[1] < 1.0
    assert coverage[2] == 0.0


def test_ngrams_see_the_frame_and_the_kind_but_not_the_name() -> None:
    qf = features()
    a, b, c = qf(["玄霜宫的掌门是谁", "天机观的掌门是谁", "顾长庚的掌门是谁"])
    np.testing.assert_array_equal(a, b)  # two factions in the same frame: identical features
    assert not np.array_equal(a, c)  # a character in the same frame: different kind placeholder


def test_features_are_deterministic_across_instances_and_processes(tmp_path: Path) -> None:
    texts = ["沈青崖用的是什么剑", "第十二章讲了什么", "Hello 玄霜宫"]
    first = features()(texts)
    np.testing.assert_array_equal(first, features()(texts))
    np.testing.assert_array_equal(first, QueryFeatures.from_json(features().to_json())(texts))
    # crc32, not the salted built-in hash: another interpreter computes the same buckets.
    script = (
        "import sys, json, numpy as np\n"
        "from retrieval.routing.features import QueryFeatures\n"
        "qf = QueryFeatures.from_json(json.loads(sys.argv[1]))\n"
        "print(json.dumps(np.flatnonzero(qf(json.loads(sys.argv[2]))).tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(features().to_json()), json.dumps(texts)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=Path(__file__).resolve().parents[3],
    )
    assert json.loads(out.stdout) == np.flatnonzero(first).tolist()


def test_bad_feature_setups_are_refused() -> None:
    with pytest.raises(ValueError, match="name table, n-gram buckets"):
        QueryFeatures({}, 0)
    with pytest.raises(ValueError, match="buckets"):
        QueryFeatures({}, -1)
    with pytest.raises(ValueError, match="malformed"):
        QueryFeatures.from_json({"names": {}})


def kind_task(seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Queries whose intent is the kind of the name in them, with uninformative random vectors."""
    rng = np.random.default_rng(seed)
    frames = ["介绍一下{}", "{}的情况", "说说{}", "{}怎么样", "关于{}", "讲讲{}", "{}的事", "{}是什么来头"]
    train_names = {"沈青崖": 0, "顾长庚": 0, "温照雪": 0, "栖岚剑宗": 1, "玄霜宫": 1, "青冥书院": 1}
    texts = [f.format(n) for n in train_names for f in frames]
    y = np.array([train_names[n] for n in train_names for _ in frames])
    x = rng.normal(size=(len(texts), DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, texts, y, ["character", "faction"]


def test_entity_kind_features_decide_a_faction_name_query() -> None:
    x, texts, y, labels = kind_task()
    qf = features(buckets=0)
    result = train_ensemble(
        x,
        y,
        labels,
        model_id="m",
        config=TrainConfig(epochs=200),
        members=1,
        val_fraction=0.0,
        features=qf,
        texts_labelled=texts,
    )
    head = result.classifier
    vector = np.random.default_rng(9).normal(size=DIM).astype(np.float32)
    vector /= np.linalg.norm(vector)
    # 天机观 never occurred in training; its kind in the KB table makes it a faction query.
    assert head.classify(vector, "介绍一下天机观").label == "faction"
    assert head.classify(vector, "介绍一下陆知薇").label == "character"
    # Same vector, same text: only the kind the table gives 天机观 changes the prediction.
    relabelled = QueryFeatures({**qf.names, "天机观": "character"}, qf.buckets)
    swapped = IntentClassifier(head.layers, head.labels, head.model_id, features=relabelled)
    assert swapped.classify(vector, "介绍一下天机观").label == "character"


def test_a_text_feature_head_needs_texts_and_survives_save_and_load(tmp_path: Path) -> None:
    x, texts, y, labels = kind_task()
    qf = features()
    head = train_ensemble(
        x,
        y,
        labels,
        model_id="m",
        config=TrainConfig(epochs=50),
        members=3,
        features=qf,
        texts_labelled=texts,
    ).classifier
    assert head.needs_text and head.dim == DIM
    with pytest.raises(ValueError, match="query text"):
        head.predict(x)
    head.save(tmp_path / "h")
    loaded = IntentClassifier.load(tmp_path / "h", model_id="m")
    assert loaded.features == qf
    np.testing.assert_allclose(loaded.predict_proba(x, texts), head.predict_proba(x, texts), rtol=1e-6)
    int8 = IntentClassifier.load(tmp_path / "h", model_id="m", precision="int8")
    assert (int8.predict(x, texts)[0] == head.predict(x, texts)[0]).mean() >= 0.95
    (tmp_path / "h" / FEATURES_FILE).unlink()
    with pytest.raises(ValueError, match=FEATURES_FILE):
        IntentClassifier.load(tmp_path / "h", model_id="m")


def test_texts_must_match_the_rows_they_describe() -> None:
    x, texts, y, labels = kind_task()
    with pytest.raises(ValueError, match="one text per"):
        train_ensemble(x, y, labels, model_id="m", members=1, features=features(), texts_labelled=texts[:-1])


def test_the_router_passes_the_query_text_to_a_text_feature_head() -> None:
    x, texts, y, labels = kind_task()
    head = train_ensemble(
        x,
        y,
        labels,
        model_id="m",
        config=TrainConfig(epochs=200),
        members=1,
        val_fraction=0.0,
        features=features(buckets=0),
        texts_labelled=texts,
    ).classifier
    table = parse_routing_table(
        {"routing": {"threshold": 0.0}, "intents": {"character": {}, "faction": {"boost": {"faction": 1.2}}}}
    )
    router = Router(table, head)
    vector = x[0]
    assert router.route(vector, "介绍一下天机观").intent == "faction"
    with pytest.raises(ValueError, match="query text"):
        router.route(vector)


def test_boundaries_add_the_start_and_end_of_the_query_as_grams() -> None:
    kw = {"buckets": 1 << 16}
    marked = QueryFeatures.from_names(list(NAMES), list(NAMES.values()), boundaries=True, **kw)
    plain = QueryFeatures.from_names(list(NAMES), list(NAMES.values()), boundaries=False, **kw)
    a, b = marked(["玄霜宫的掌门是谁"])[0], plain(["玄霜宫的掌门是谁"])[0]
    assert np.all(a >= b)  # every plain gram is still there...
    assert a.sum() == b.sum() + 2  # ...plus "^<faction>" and "谁$"


@pytest.mark.parametrize("hidden", [0, 4])
def test_one_query_takes_the_sparse_path_and_scores_as_in_a_batch(hidden: int) -> None:
    x, texts, y, labels = kind_task()
    head = train_ensemble(
        x,
        y,
        labels,
        model_id="m",
        config=TrainConfig(epochs=20, hidden=hidden),
        members=1,
        features=features(),
        texts_labelled=texts,
    ).classifier
    for clf in (head, head.quantized()):
        batch = clf.logits(x, texts)  # more rows than the sparse path takes: one full matmul
        one_by_one = np.concatenate([clf.logits(x[i], [texts[i]]) for i in range(len(texts))])
        np.testing.assert_allclose(one_by_one, batch, rtol=1e-5, atol=1e-5)
