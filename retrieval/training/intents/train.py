"""Training the intent head: focal loss, class weights, AdamW, early stopping, ensembles.

The trained head is a `retrieval.routing.classifier.IntentClassifier`, the serving side's type;
nothing here is imported when serving.

* focal loss and class weights for the long tail (`retrieval.training.intents.loss`);
* Adam with decoupled weight decay (AdamW), mini-batches, optional dropout on the input and on
  the hidden layer;
* early stopping on validation **macro-F1** (ties broken by validation loss), restoring the best
  epoch's weights;
* everything drawn from one ``numpy.random.Generator`` seeded by the config: same data, same seed,
  same weights;
* optionally an ensemble (`train_ensemble`): linear heads trained on different stratified splits
  and averaged into one weight matrix, which is exact for linear heads and keeps inference one
  matmul.

Inputs are standardised per dimension during training (embeddings of one model crowd into a narrow
cone, so raw coordinates differ little between classes); the standardisation is folded into the
first layer when the classifier is built, so inference is a plain matmul.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.routing.classifier import (
    CLASS_WEIGHTINGS,
    DenseLayer,
    FloatArray,
    IntArray,
    IntentClassifier,
    KindAnchors,
)
from retrieval.routing.features import QueryFeatures
from retrieval.training.intents.loss import class_weights, focal_loss, stratified_split
from retrieval.training.intents.report import macro_f1


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; every field is recorded with the trained head."""

    hidden: int = 0
    """Units of the one hidden layer; 0 means a linear softmax head."""
    epochs: int = 300
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    """Decoupled (AdamW) decay of the weight matrices; biases are not decayed."""
    dropout: float = 0.0
    """Dropout on the hidden activations (ignored when hidden == 0)."""
    input_dropout: float = 0.0
    gamma: float = 0.0
    """Focal-loss focusing parameter; 0 is cross-entropy."""
    class_weighting: str = "inverse_sqrt"
    effective_beta: float = 0.999
    patience: int = 30
    """Epochs without a better validation score before stopping."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 0:
            raise ValueError("hidden must be >= 0")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError("learning_rate must be a positive number")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise ValueError("weight_decay must be >= 0")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.input_dropout < 1.0):
            raise ValueError("dropout rates must lie in [0, 1)")
        if self.gamma < 0 or not math.isfinite(self.gamma):
            raise ValueError("gamma must be >= 0")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting must be one of {CLASS_WEIGHTINGS}")
        if not 0.0 < self.effective_beta < 1.0:
            raise ValueError("effective_beta must lie in (0, 1)")


# -- training ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochStats:
    """Loss and validation score after one epoch."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_macro_f1: float | None


@dataclass(frozen=True)
class TrainResult:
    """The trained classifier (best epoch) and how training went."""

    classifier: IntentClassifier
    config: TrainConfig
    history: tuple[EpochStats, ...]
    best_epoch: int
    best_val_macro_f1: float | None
    seconds: float
    stopped_early: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Params:
    weights: list[npt.NDArray[np.float64]]  # (in, out) each
    biases: list[npt.NDArray[np.float64]]

    def copy(self) -> _Params:
        return _Params([w.copy() for w in self.weights], [b.copy() for b in self.biases])


def _forward(
    params: _Params, x: npt.NDArray[np.float64], rng: np.random.Generator | None, config: TrainConfig
) -> tuple[npt.NDArray[np.float64], list[npt.NDArray[np.float64]], list[npt.NDArray[np.float64] | None]]:
    """Logits plus what backprop needs: each layer's input and its dropout mask (None: no dropout)."""
    inputs: list[npt.NDArray[np.float64]] = []
    masks: list[npt.NDArray[np.float64] | None] = []
    h = x
    last = len(params.weights) - 1
    for i, (w, b) in enumerate(zip(params.weights, params.biases, strict=True)):
        rate = config.input_dropout if i == 0 else config.dropout
        mask = None
        if rng is not None and rate > 0:
            # Inverted dropout: scale at training time so inference needs no change.
            mask = (rng.random(h.shape) >= rate) / (1.0 - rate)
            h = h * mask
        inputs.append(h)
        masks.append(mask)
        h = h @ w + b
        if i < last:
            h = np.maximum(h, 0.0)
    return h, inputs, masks


def _backward(
    params: _Params,
    inputs: list[npt.NDArray[np.float64]],
    masks: list[npt.NDArray[np.float64] | None],
    grad_logits: npt.NDArray[np.float64],
) -> _Params:
    grads_w: list[npt.NDArray[np.float64]] = [np.empty(0)] * len(params.weights)
    grads_b: list[npt.NDArray[np.float64]] = [np.empty(0)] * len(params.weights)
    g = grad_logits
    for i in range(len(params.weights) - 1, -1, -1):
        grads_w[i] = inputs[i].T @ g
        grads_b[i] = g.sum(axis=0)
        if i > 0:
            g = g @ params.weights[i].T
            mask = masks[i]
            if mask is not None:
                g = g * mask
            # inputs[i] is the (dropped-out) ReLU output; its zeros are where the ReLU was off.
            g = g * (inputs[i] > 0)
    return _Params(grads_w, grads_b)


def _init_params(dim: int, classes: int, config: TrainConfig, rng: np.random.Generator) -> _Params:
    sizes = [dim, config.hidden, classes] if config.hidden else [dim, classes]
    weights, biases = [], []
    for fan_in, fan_out in itertools.pairwise(sizes):
        # He init before a ReLU, Glorot for the softmax layer.
        std = math.sqrt(2.0 / fan_in) if fan_out != classes else math.sqrt(2.0 / (fan_in + fan_out))
        weights.append(rng.normal(0.0, std, size=(fan_in, fan_out)))
        biases.append(np.zeros(fan_out))
    return _Params(weights, biases)


def _build_classifier(
    params: _Params,
    mean: npt.NDArray[np.float64],
    std: npt.NDArray[np.float64],
    labels: Sequence[str],
    model_id: str,
    anchors: KindAnchors | None = None,
    features: QueryFeatures | None = None,
) -> IntentClassifier:
    # Fold standardisation into layer 0: ((x - m) / s) @ W + b == x @ (W / s) + (b - (m / s) @ W).
    w0 = params.weights[0] / std[:, None]
    b0 = params.biases[0] - (mean / std) @ params.weights[0]
    weights = [w0, *params.weights[1:]]
    biases = [b0, *params.biases[1:]]
    layers = [
        DenseLayer(np.ascontiguousarray(w.T, dtype=np.float32), np.asarray(b, dtype=np.float32))
        for w, b in zip(weights, biases, strict=True)
    ]
    return IntentClassifier(layers, labels, model_id, anchors=anchors, features=features)


def train_classifier(
    x_train: FloatArray,
    y_train: IntArray | Sequence[int],
    labels: Sequence[str],
    *,
    model_id: str,
    config: TrainConfig | None = None,
    x_val: FloatArray | None = None,
    y_val: IntArray | Sequence[int] | None = None,
    anchors: KindAnchors | None = None,
    features: QueryFeatures | None = None,
    q_train: FloatArray | None = None,
    q_val: FloatArray | None = None,
) -> TrainResult:
    """Train a head on embeddings; with a validation set, keep the epoch of best macro-F1.

    With `anchors`, the head's input is the embedding plus one max-cosine feature per KB kind.
    With `features`, also the query text features: `q_train` (and `q_val`) are
    ``features(texts)`` of the training (validation) rows, computed once by the caller.
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.int64)
    classes = len(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError("x_train must be (n, dim) with n >= 1 and y_train (n,)")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"training labels must lie in [0, {classes})")
    if not np.isfinite(x).all():
        raise ValueError("training vectors contain NaN or infinity")
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        xv = np.asarray(x_val, dtype=np.float64)
        yv = np.asarray(y_val, dtype=np.int64)
        if xv.ndim != 2 or xv.shape[1] != x.shape[1] or yv.shape != (xv.shape[0],):
            raise ValueError("validation vectors must match the training dimension")
        if yv.min() < 0 or yv.max() >= classes:
            raise ValueError(f"validation labels must lie in [0, {classes})")

    if anchors is not None:
        if anchors.dim != x.shape[1]:
            raise ValueError(f"anchors are {anchors.dim}-d, training vectors {x.shape[1]}-d")
        x = np.concatenate([x, anchors(x.astype(np.float32)).astype(np.float64)], axis=1)
        if has_val:
            xv = np.concatenate([xv, anchors(xv.astype(np.float32)).astype(np.float64)], axis=1)
    raw_columns = 0
    if features is not None:
        if q_train is None or np.shape(q_train) != (x.shape[0], features.dim):
            raise ValueError(f"q_train must be (n, {features.dim}): features(texts) of the training rows")
        x = np.concatenate([x, np.asarray(q_train, dtype=np.float64)], axis=1)
        if has_val:
            if q_val is None or np.shape(q_val) != (xv.shape[0], features.dim):
                raise ValueError(
                    f"q_val must be (n_val, {features.dim}): features(texts) of the validation rows"
                )
            xv = np.concatenate([xv, np.asarray(q_val, dtype=np.float64)], axis=1)
        raw_columns = features.buckets
    rng = np.random.default_rng(config.seed)
    mean = x.mean(axis=0)
    # A floor, not an epsilon: a near-constant input must not be blown up into noise at inference.
    std = np.maximum(x.std(axis=0), 1e-3)
    if raw_columns:
        # Sparse 0/1 text features: standardising would blow a rare n-gram up to tens of units
        # (and a bucket never seen in training to a thousand at inference); keep them as they are.
        mean[-raw_columns:] = 0.0
        std[-raw_columns:] = 1.0
    xs = (x - mean) / std
    xvs = (xv - mean) / std if has_val else None

    counts = np.bincount(y, minlength=classes)
    alpha = class_weights(counts, config.class_weighting, config.effective_beta)
    sample_w = alpha[y]
    val_w = alpha[yv] if has_val else None
    if has_val and val_w is not None and val_w.sum() <= 0:
        val_w = np.ones(len(yv))  # a validation class absent from training: score it unweighted

    params = _init_params(x.shape[1], classes, config, rng)
    m = [np.zeros_like(p) for p in [*params.weights, *params.biases]]
    v = [np.zeros_like(p) for p in [*params.weights, *params.biases]]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    n_weights = len(params.weights)

    history: list[EpochStats] = []
    best = params.copy()
    best_key: tuple[float, float] | None = None
    best_epoch = 0
    since_best = 0
    stopped_early = False
    n = x.shape[0]
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(n)
        losses: list[float] = []
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            logits, inputs, masks = _forward(params, xs[idx], rng, config)
            loss, grad = focal_loss(logits, y[idx], config.gamma, sample_w[idx])
            losses.append(loss * float(sample_w[idx].sum()))
            grads = _backward(params, inputs, masks, grad)
            step += 1
            flat_p = [*params.weights, *params.biases]
            flat_g = [*grads.weights, *grads.biases]
            lr_t = config.learning_rate * math.sqrt(1 - beta2**step) / (1 - beta1**step)
            for k, (p, g) in enumerate(zip(flat_p, flat_g, strict=True)):
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                if k < n_weights and config.weight_decay:
                    p -= config.learning_rate * config.weight_decay * p  # decoupled: not in the moments
                p -= lr_t * m[k] / (np.sqrt(v[k]) + eps)
        train_loss = float(sum(losses) / sample_w.sum())

        if has_val and xvs is not None and val_w is not None:
            logits, _, _ = _forward(params, xvs, None, config)
            val_loss, _ = focal_loss(logits, yv, config.gamma, val_w)
            val_f1 = macro_f1(yv, logits.argmax(axis=1), classes)
            history.append(EpochStats(epoch, train_loss, val_loss, val_f1))
            key = (val_f1, -val_loss)
            if best_key is None or key > best_key:
                best_key, best, best_epoch, since_best = key, params.copy(), epoch, 0
            else:
                since_best += 1
                if since_best >= config.patience:
                    stopped_early = True
                    break
        else:
            history.append(EpochStats(epoch, train_loss, None, None))
            best, best_epoch = params, epoch

    classifier = _build_classifier(best, mean, std, labels, model_id, anchors, features)
    return TrainResult(
        classifier=classifier,
        config=config,
        history=tuple(history),
        best_epoch=best_epoch,
        best_val_macro_f1=best_key[0] if best_key is not None else None,
        seconds=time.perf_counter() - started,
        stopped_early=stopped_early,
        info={"train_samples": int(n), "class_weights": alpha.round(6).tolist()},
    )


def config_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as JSON-ready dict (for meta.json)."""
    return asdict(config)


@dataclass(frozen=True)
class EnsembleResult:
    """A weight-averaged head and the runs it averages."""

    classifier: IntentClassifier
    members: tuple[TrainResult, ...]
    validation_splits: tuple[IntArray, ...]
    """Each member's validation indices into the labelled set."""
    seconds: float

    @property
    def mean_val_macro_f1(self) -> float | None:
        """Mean of the members' best validation macro-F1."""
        scores = [m.best_val_macro_f1 for m in self.members if m.best_val_macro_f1 is not None]
        return float(np.mean(scores)) if scores else None


def average_linear_heads(heads: Sequence[IntentClassifier]) -> IntentClassifier:
    """One linear head whose logits are the mean of the heads' logits (exact for linear heads).

    Each head folded its own standardisation into its weights, so plain averaging is exact:
    mean_k(x @ W_k + b_k) == x @ mean_k(W_k) + mean_k(b_k). Inference stays one matmul.
    """
    if not heads:
        raise ValueError("nothing to average")
    first = heads[0]
    for head in heads:
        if len(head.layers) != 1 or head.precision != "fp32":
            raise ValueError("only float32 linear heads (hidden=0) can be averaged into one")
        if head.labels != first.labels or head.model_id != first.model_id:
            raise ValueError("heads to average must share labels and embedding model")
        if (head.anchors is None) != (first.anchors is None):
            raise ValueError("heads to average must all use anchors or none")
        if head.features != first.features:
            raise ValueError("heads to average must use the same query text features")
    weight = np.mean([h.layers[0].weight for h in heads], axis=0).astype(np.float32)
    bias = np.mean([h.layers[0].bias for h in heads], axis=0).astype(np.float32)
    return IntentClassifier(
        [DenseLayer(weight, bias)],
        first.labels,
        first.model_id,
        anchors=first.anchors,
        features=first.features,
    )


def train_ensemble(
    x_labelled: FloatArray,
    y_labelled: IntArray | Sequence[int],
    labels: Sequence[str],
    *,
    model_id: str,
    config: TrainConfig | None = None,
    members: int = 5,
    val_fraction: float = 0.15,
    x_variants: FloatArray | None = None,
    variant_of: IntArray | Sequence[int] | None = None,
    x_extra: FloatArray | None = None,
    y_extra: IntArray | Sequence[int] | None = None,
    anchors: KindAnchors | None = None,
    features: QueryFeatures | None = None,
    texts_labelled: Sequence[str] | None = None,
    texts_variants: Sequence[str] | None = None,
    texts_extra: Sequence[str] | None = None,
) -> EnsembleResult:
    """Train `members` linear heads on different stratified splits and average them.

    Member k holds out its own validation split (seed ``config.seed + k``) for early stopping;
    augmented variants (`x_variants`, each the variant of labelled row ``variant_of[i]``) train
    only the members whose training split holds their original, so no member validates on
    paraphrases of its own training rows. `x_extra` rows always train. With `features`, the
    texts of every row set given are needed too (`texts_labelled`, `texts_variants`, `texts_extra`).
    """
    config = config or TrainConfig()
    if members < 1:
        raise ValueError("members must be >= 1")
    if members > 1 and config.hidden:
        raise ValueError("an ensemble averages weights, so it needs a linear head (hidden=0)")
    started = time.perf_counter()
    x = np.asarray(x_labelled, dtype=np.float32)
    y = np.asarray(y_labelled, dtype=np.int64)
    dim = x.shape[1]
    xv = np.zeros((0, dim), np.float32) if x_variants is None else np.asarray(x_variants, np.float32)
    origin = np.zeros(0, np.int64) if variant_of is None else np.asarray(variant_of, np.int64)
    if len(origin) != len(xv):
        raise ValueError("variant_of must name the original of every variant")
    xe = np.zeros((0, dim), np.float32) if x_extra is None else np.asarray(x_extra, np.float32)
    ye = np.zeros(0, np.int64) if y_extra is None else np.asarray(y_extra, np.int64)
    if len(xe) != len(ye):
        raise ValueError("x_extra and y_extra differ in length")
    width = features.dim if features is not None else 0
    q = qv = qe = np.zeros((0, width), np.float32)
    if features is not None:
        given = (texts_labelled or [], texts_variants or [], texts_extra or [])
        if tuple(map(len, given)) != (len(x), len(xv), len(xe)):
            raise ValueError("query text features need one text per labelled, variant and extra row")
        q, qv, qe = (features(list(texts)) for texts in given)

    runs: list[TrainResult] = []
    splits: list[IntArray] = []
    for k in range(members):
        member_config = TrainConfig(**{**asdict(config), "seed": config.seed + k})
        train_idx, val_idx = stratified_split(y, val_fraction, member_config.seed)
        keep = np.isin(origin, train_idx)
        runs.append(
            train_classifier(
                np.concatenate([x[train_idx], xv[keep], xe]),
                np.concatenate([y[train_idx], y[origin[keep]], ye]),
                labels,
                model_id=model_id,
                config=member_config,
                x_val=x[val_idx] if len(val_idx) else None,
                y_val=y[val_idx] if len(val_idx) else None,
                anchors=anchors,
                features=features,
                q_train=np.concatenate([q[train_idx], qv[keep], qe]) if features is not None else None,
                q_val=q[val_idx] if features is not None and len(val_idx) else None,
            )
        )
        splits.append(val_idx)
    classifier = runs[0].classifier if members == 1 else average_linear_heads([r.classifier for r in runs])
    return EnsembleResult(classifier, tuple(runs), tuple(splits), time.perf_counter() - started)
