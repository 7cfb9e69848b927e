"""The intent head: learning, focal loss, class weights, splits, INT8, persistence, ensembles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import ModelMismatch
from retrieval.routing.classifier import IntentClassifier, KindAnchors, quantize_rows
from retrieval.training.intents.loss import class_weights, focal_loss, stratified_split
from retrieval.training.intents.report import macro_f1
from retrieval.training.intents.train import (
    TrainConfig,
    average_linear_heads,
    train_classifier,
    train_ensemble,
)

pytestmark = pytest.mark.unit


def clusters(
    classes: int, per_class: int, dim: int, spread: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised points around random centres, like embeddings of distinct topics."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    x = np.repeat(centres, per_class, axis=0) + spread * rng.normal(size=(classes * per_class, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(classes), per_class)


def reference_cross_entropy(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Weighted-mean cross-entropy and its gradient, written independently of the module."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float((w * -np.log(p[rows, y])).sum() / w.sum())
    onehot = np.zeros_like(p)
    onehot[rows, y] = 1.0
    return loss, (p - onehot) * (w / w.sum())[:, None]


def test_separable_clusters_are_learned() -> None:
    x, y = clusters(classes=8, per_class=30, dim=48, spread=0.6)
    train, val = stratified_split(y, 0.25, seed=0)
    result = train_classifier(
        x[train], y[train], [f"c{i}" for i in range(8)], model_id="m", x_val=x[val], y_val=y[val]
    )
    predicted, confidence = result.classifier.predict(x[val])
    assert (predicted == y[val]).mean() >= 0.95
    assert result.best_val_macro_f1 is not None and result.best_val_macro_f1 >= 0.95
    assert np.all((confidence > 0) & (confidence <= 1))


def test_hidden_layer_learns_a_non_linear_boundary() -> None:
    # XOR-like: class = sign(x0 * x1); no linear head can separate it.
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(600, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    config = TrainConfig(hidden=32, epochs=400, learning_rate=1e-2, weight_decay=0.0, patience=80)
    result = train_classifier(
        x[:450], y[:450], ["a", "b"], model_id="m", x_val=x[450:], y_val=y[450:], config=config
    )
    predicted, _ = result.classifier.predict(x[450:])
    assert (predicted == y[450:]).mean() >= 0.9


@pytest.mark.parametrize("weighted", [False, True])
def test_focal_loss_with_gamma_zero_is_cross_entropy(weighted: bool) -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=4.0, size=(9, 6))
    y = rng.integers(0, 6, size=9)
    w = rng.uniform(0.2, 3.0, size=9) if weighted else np.ones(9)
    loss, grad = focal_loss(logits, y, gamma=0.0, sample_weights=w if weighted else None)
    ref_loss, ref_grad = reference_cross_entropy(logits, y, w)
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_focal_loss_gradient_matches_finite_differences(gamma: float) -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(5, 4))
    y = rng.integers(0, 4, size=5)
    w = rng.uniform(0.5, 2.0, size=5)
    _, grad = focal_loss(logits, y, gamma, w)
    numeric = np.zeros_like(logits)
    eps = 1e-6
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            up, down = logits.copy(), logits.copy()
            up[i, j] += eps
            down[i, j] -= eps
            numeric[i, j] = (focal_loss(up, y, gamma, w)[0] - focal_loss(down, y, gamma, w)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-7)


def test_focal_loss_down_weights_easy_examples() -> None:
    # One confident-correct row and one wrong row: focal loss shrinks the easy row's share.
    logits = np.array([[6.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0])
    ce, _ = focal_loss(logits, y, gamma=0.0)
    fl, _ = focal_loss(logits, y, gamma=2.0)
    assert fl < ce
    assert focal_loss(logits[:1], y[:1], gamma=2.0)[0] < 1e-3 * focal_loss(logits[:1], y[:1], gamma=0.0)[0]


def test_focal_loss_is_finite_for_saturated_logits() -> None:
    loss, grad = focal_loss(np.array([[1000.0, -1000.0, 0.0]]), np.array([0]), gamma=0.5)
    assert np.isfinite(loss) and np.isfinite(grad).all()


def test_class_weights_favour_the_long_tail_and_average_one() -> None:
    counts = np.array([100, 25, 4, 0])
    for scheme in ("inverse", "inverse_sqrt", "effective"):
        w = class_weights(counts, scheme)
        assert w[0] < w[1] < w[2]
        assert w[3] == 0
        assert (w * counts).sum() / counts.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(class_weights(counts, "none")[:3], 1.0)
    np.testing.assert_allclose(
        class_weights([4, 16], "inverse_sqrt") / class_weights([4, 16], "inverse_sqrt")[1], [2, 1]
    )
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights(counts, "bogus")


def test_stratified_split_holds_out_every_class_and_keeps_singletons() -> None:
    y = np.array([0] * 20 + [1] * 5 + [2] * 1)
    train, val = stratified_split(y, 0.2, seed=7)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(y)
    assert np.bincount(y[val], minlength=3).tolist() == [4, 1, 0]
    assert (y[train] == 2).sum() == 1
    again = stratified_split(y, 0.2, seed=7)
    assert np.array_equal(again[1], val)


def test_training_is_deterministic_for_a_seed() -> None:
    x, y = clusters(classes=4, per_class=20, dim=16, spread=1.0)
    config = TrainConfig(input_dropout=0.3, epochs=40, seed=11)
    a = train_classifier(x, y, list("abcd"), model_id="m", config=config).classifier
    b = train_classifier(x, y, list("abcd"), model_id="m", config=config).classifier
    c = train_classifier(
        x, y, list("abcd"), model_id="m", config=TrainConfig(input_dropout=0.3, epochs=40, seed=12)
    )
    assert np.array_equal(a.layers[0].weight, b.layers[0].weight)
    assert not np.array_equal(a.layers[0].weight, c.classifier.layers[0].weight)


def test_early_stopping_restores_the_best_epoch() -> None:
    # Few noisy samples in many dimensions: the head overfits and validation gets worse.
    x, y = clusters(classes=3, per_class=12, dim=64, spread=3.0)
    train, val = stratified_split(y, 0.3, 0)
    config = TrainConfig(patience=5, learning_rate=3e-2, weight_decay=0.0, class_weighting="none")
    result = train_classifier(
        x[train], y[train], list("abc"), model_id="m", x_val=x[val], y_val=y[val], config=config
    )
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 5
    best = max(h.val_macro_f1 or 0.0 for h in result.history)
    assert result.best_val_macro_f1 == best
    # The returned head is the best epoch's, not the last one's.
    predicted, _ = result.classifier.predict(x[val])
    assert macro_f1(y[val], predicted, 3) == pytest.approx(best, abs=1e-6)


@pytest.mark.slow
def test_two_hundred_classes_train_and_int8_matches_fp32() -> None:
    x, y = clusters(classes=210, per_class=8, dim=512, spread=1.5, seed=5)
    train, val = stratified_split(y, 0.25, seed=0)
    labels = [f"intent_{i:03d}" for i in range(210)]
    config = TrainConfig(epochs=60, batch_size=256, patience=10, gamma=1.0, class_weighting="effective")
    result = train_classifier(
        x[train], y[train], labels, model_id="m", x_val=x[val], y_val=y[val], config=config
    )
    fp32 = result.classifier
    int8 = fp32.quantized()
    assert int8.precision == "int8" and int8.layers[0].weight.dtype == np.int8
    p32, _ = fp32.predict(x)
    p8, _ = int8.predict(x)
    assert (p32 == p8).mean() >= 0.98
    assert (p32[val] == y[val]).mean() >= 0.9
    assert fp32.classify(x[0]).label in labels


def test_quantize_rows_bounds_the_error_per_row() -> None:
    w = np.random.default_rng(0).normal(size=(7, 33)).astype(np.float32) * np.arange(1, 8)[:, None]
    q, scale = quantize_rows(w)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    assert np.all(np.abs(q * scale[:, None] - w) <= scale[:, None] / 2 + 1e-6)
    q0, s0 = quantize_rows(np.zeros((2, 3), np.float32))
    assert not q0.any() and np.all(s0 == 1.0)


def test_save_load_round_trip_and_model_id_guard(tmp_path: Path) -> None:
    x, y = clusters(classes=3, per_class=15, dim=12, spread=0.5)
    clf = train_classifier(
        x, y, ["a", "b", "c"], model_id="m3e-small", config=TrainConfig(epochs=30)
    ).classifier
    clf.save(tmp_path, {"gamma": 0.0, "seed": 0})
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["embedding_model_id"] == "m3e-small" and meta["classes"] == 3
    loaded = IntentClassifier.load(tmp_path, model_id="m3e-small")
    np.testing.assert_allclose(loaded.predict_proba(x), clf.predict_proba(x), rtol=1e-6)
    assert IntentClassifier.load(tmp_path, model_id="m3e-small", precision="int8").precision == "int8"
    with pytest.raises(ModelMismatch, match="m3e-small"):
        IntentClassifier.load(tmp_path, model_id="another-model")
    with pytest.raises(ValueError, match="not a trained intent classifier"):
        IntentClassifier.load(tmp_path / "missing", model_id="m3e-small")


def test_wrong_input_dimension_is_refused() -> None:
    x, y = clusters(classes=2, per_class=10, dim=6, spread=0.5)
    clf = train_classifier(x, y, ["a", "b"], model_id="m", config=TrainConfig(epochs=5)).classifier
    with pytest.raises(ValueError, match="dimension 6"):
        clf.classify(np.zeros(7, np.float32))


def test_kind_anchors_feed_the_head_and_survive_save_load(tmp_path: Path) -> None:
    x, y = clusters(classes=3, per_class=20, dim=16, spread=0.4)
    names = x[[0, 20, 40]] * 0.9 + 0.1
    names /= np.linalg.norm(names, axis=1, keepdims=True)
    anchors = KindAnchors.build(names, ["place", "person", "place"])
    assert anchors.kinds == ("person", "place")
    features = anchors(x[:2])
    assert features.shape == (2, 2)
    np.testing.assert_allclose(features[0, 1], max(x[0] @ names[0], x[0] @ names[2]), rtol=1e-5)
    clf = train_classifier(
        x, y, list("abc"), model_id="m", config=TrainConfig(epochs=30), anchors=anchors
    ).classifier
    assert clf.dim == 16 and clf.layers[0].weight.shape[1] == 18
    clf.save(tmp_path)
    loaded = IntentClassifier.load(tmp_path, model_id="m", precision="int8")
    assert loaded.anchors is not None and loaded.anchors.vectors.weight.dtype == np.float32
    assert loaded.layers[0].weight.dtype == np.int8
    assert (loaded.predict(x)[0] == clf.predict(x)[0]).mean() >= 0.95


def test_ensemble_is_one_linear_head_with_the_mean_logits() -> None:
    x, y = clusters(classes=4, per_class=25, dim=10, spread=0.8)
    result = train_ensemble(x, y, list("abcd"), model_id="m", config=TrainConfig(epochs=40), members=3)
    assert len(result.members) == 3 and len(result.classifier.layers) == 1
    mean_logits = np.mean([m.classifier.logits(x) for m in result.members], axis=0)
    np.testing.assert_allclose(result.classifier.logits(x), mean_logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="linear head"):
        train_ensemble(x, y, list("abcd"), model_id="m", config=TrainConfig(hidden=4), members=2)
    with pytest.raises(ValueError, match="nothing to average"):
        average_linear_heads([])


def test_ensemble_keeps_augmented_variants_out_of_their_originals_validation() -> None:
    x, y = clusters(classes=2, per_class=20, dim=6, spread=0.5)
    variants = x + 0.01
    result = train_ensemble(
        x,
        y,
        ["a", "b"],
        model_id="m",
        config=TrainConfig(epochs=5),
        members=2,
        x_variants=variants,
        variant_of=np.arange(len(x)),
    )
    for member, val in zip(result.members, result.validation_splits, strict=True):
        assert member.info["train_samples"] == 2 * (len(x) - len(val))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden", -1),
        ("epochs", 0),
        ("learning_rate", 0.0),
        ("dropout", 1.0),
        ("gamma", -0.5),
        ("class_weighting", "sqrt"),
        ("effective_beta", 1.0),
        ("weight_decay", float("nan")),
    ],
)
def test_bad_train_config_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        TrainConfig(**{field: value})  # type: ignore[arg-type]
