"""The pieces of intent-head training that need no model: focal loss, class weights, stratified splits.

* **focal loss** ``FL = -alpha_y (1 - p_y)^gamma log p_y`` (Lin et al. 2017); ``gamma = 0`` is
  exactly (weighted) cross-entropy, so the same code path covers both;
* **class weights** ``alpha`` for the long tail: inverse, inverse square root, or the "effective
  number of samples" ``(1 - beta) / (1 - beta^n)`` of Cui et al. 2019, normalised to mean 1 per
  sample so the learning rate means the same whatever the scheme.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from retrieval.routing.classifier import CLASS_WEIGHTINGS, FloatArray, IntArray


def log_softmax(logits: FloatArray) -> npt.NDArray[np.float64]:
    """Row-wise log-softmax, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    out: npt.NDArray[np.float64] = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


def focal_loss(
    logits: FloatArray,
    targets: IntArray | Sequence[int],
    gamma: float = 0.0,
    sample_weights: FloatArray | None = None,
) -> tuple[float, npt.NDArray[np.float64]]:
    """Weighted-mean focal loss and its gradient with respect to the logits.

    ``loss = sum_i w_i * -(1 - p_i)^gamma * log p_i / sum_i w_i`` with p_i the softmax probability
    of sample i's target (the normalisation PyTorch's weighted cross-entropy uses). With
    ``gamma = 0`` both value and gradient are those of cross-entropy, computed by the same
    expressions: ``d loss / d z = w (p - onehot) / sum w``.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError("logits must be (n, classes) and targets (n,)")
    n = z.shape[0]
    w = np.ones(n) if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)
    total = float(w.sum())
    if n == 0 or total <= 0:
        raise ValueError("focal loss needs at least one sample with positive weight")
    log_probs = log_softmax(z)
    probs = np.exp(log_probs)
    rows = np.arange(n)
    log_pt = log_probs[rows, y]
    pt = probs[rows, y]
    # 1 - p via expm1 keeps precision when p is close to 1 (confident, correct samples).
    one_minus = -np.expm1(log_pt)
    modulator = one_minus**gamma
    losses = -modulator * log_pt
    # d/dz_j of -(1-p)^g log p  =  [g (1-p)^(g-1) p log p - (1-p)^g] (onehot_j - p_j).
    # For g = 0 the bracket is exactly -1; the clip only guards 0^(negative) when p == 1.
    bracket = (
        gamma * np.maximum(one_minus, 1e-12) ** (gamma - 1.0) * pt * log_pt - modulator
        if gamma
        else -modulator
    )
    onehot = np.zeros_like(z)
    onehot[rows, y] = 1.0
    grad = (bracket * w / total)[:, None] * (onehot - probs)
    return float((w * losses).sum() / total), grad


def class_weights(
    counts: Sequence[int] | IntArray, scheme: str = "inverse_sqrt", beta: float = 0.999
) -> FloatArray:
    """Per-class loss weights, normalised so the mean weight over all samples is 1.

    Classes with no samples get weight 0 (they never appear in the loss anyway).
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or (n < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative numbers")
    present = n > 0
    raw = np.zeros_like(n)
    if scheme == "none":
        raw[present] = 1.0
    elif scheme == "inverse":
        raw[present] = 1.0 / n[present]
    elif scheme == "inverse_sqrt":
        raw[present] = 1.0 / np.sqrt(n[present])
    elif scheme == "effective":
        raw[present] = (1.0 - beta) / (1.0 - beta ** n[present])
    else:
        raise ValueError(f"unknown class weighting {scheme!r}; choose from {CLASS_WEIGHTINGS}")
    total = float((raw * n).sum())
    if total <= 0:
        raise ValueError("no class has any sample")
    weights: npt.NDArray[np.float64] = raw * n.sum() / total
    return weights


def stratified_split(
    labels: Sequence[int] | IntArray, fraction: float, seed: int
) -> tuple[IntArray, IntArray]:
    """Indices (train, validation) holding out about `fraction` of every class.

    A class keeps at least one training sample; a class with a single sample stays in training.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError("validation fraction must lie in [0, 1)")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        take = min(max(1, round(fraction * len(members))), len(members) - 1) if fraction > 0 else 0
        if take > 0:
            val.extend(rng.permutation(members)[:take].tolist())
    val_idx = np.array(sorted(val), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx).astype(np.int64)
    return train_idx, val_idx
