"""The intent head: a small softmax classifier on the query embedding the pipeline already computed.

No second encoder pass: the input is the one L2-normalised query vector (m3e-small, 512 dims).
The head is linear (`hidden=0`) or has one ReLU hidden layer, and is trained here in numpy:

* **focal loss** ``FL = -alpha_y (1 - p_y)^gamma log p_y`` (Lin et al. 2017); ``gamma = 0`` is
  exactly (weighted) cross-entropy, so the same code path covers both;
* **class weights** ``alpha`` for the long tail: inverse, inverse square root, or the "effective
  number of samples" ``(1 - beta) / (1 - beta^n)`` of Cui et al. 2019, normalised to mean 1 per
  sample so the learning rate means the same whatever the scheme;
* Adam with decoupled weight decay (AdamW), mini-batches, optional dropout on the input and on
  the hidden layer;
* early stopping on validation **macro-F1** (ties broken by validation loss), restoring the best
  epoch's weights;
* everything drawn from one ``numpy.random.Generator`` seeded by the config: same data, same seed,
  same weights;
* optionally an ensemble (`train_ensemble`): linear heads trained on different stratified splits
  and averaged into one weight matrix, which is exact for linear heads and keeps inference one
  matmul.

Optionally the head also sees **KB anchor features**: for every KB kind, the highest cosine
between the query vector and the embeddings of that kind's titles and aliases (one extra
(names x dim) matmul on the same vector; no text, no second encoder pass). A general embedding
cannot tell that "栖梧琴" is an item of this world; the nearest KB names can.

And optionally **query text features** (`retrieval.routing.features.QueryFeatures`): the KB kinds
of the names the query text contains and hashed character n-grams of its wording around them.
They come from the query string alone (no encoder pass), so `logits`/`classify` then need the
texts along with the vectors. These sparse 0/1 columns are not standardised (see
`train_classifier`).

Inputs are standardised per dimension during training (embeddings of one model crowd into a narrow
cone, so raw coordinates differ little between classes); the standardisation is folded into the
first layer when the classifier is built, so inference is a plain matmul. Inference can run with
INT8 weights quantised per output row (symmetric, one float scale per row): the file stays
float32 and quantisation happens at load, so one trained head serves both precisions.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from retrieval.errors import ModelMismatch
from retrieval.routing.features import QueryFeatures
from retrieval.routing.report import macro_f1

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
Precision = Literal["fp32", "int8"]

FORMAT_VERSION = 1
WEIGHTS_FILE = "head.npz"
LABELS_FILE = "labels.json"
FEATURES_FILE = "features.json"
META_FILE = "meta.json"
CLASS_WEIGHTINGS = ("none", "inverse", "inverse_sqrt", "effective")


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


# -- loss, weights, split ----------------------------------------------------------------------


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


# -- inference ---------------------------------------------------------------------------------


def quantize_rows(weight: FloatArray) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Symmetric INT8 per output row: ``weight[r] ~= q[r] * scale[r]``, q in [-127, 127]."""
    w = np.asarray(weight, dtype=np.float32)
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


_GEMV_BLOCK = 256
_FEW_QUERIES = 4


@dataclass(frozen=True)
class DenseLayer:
    """``y = x @ weight.T * scale + bias``; weight is (out, in), float32 or int8 with a row scale."""

    weight: npt.NDArray[Any]
    bias: npt.NDArray[np.float32]
    scale: npt.NDArray[np.float32] | None = None

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Apply to a (n, in) batch."""
        if self.scale is not None:
            # numpy has no int8 GEMM: W @ x.T widens the int8 rows inside the product (the x @ W.T
            # spelling of the same thing takes a generic loop, 7x slower); scale per row afterwards.
            widened: npt.NDArray[np.float32] = (self.weight @ x.T).T * self.scale + self.bias
            return widened
        rows = self.weight.shape[0]
        if x.shape[0] <= _FEW_QUERIES and rows > _GEMV_BLOCK:
            # One query against a tall matrix: OpenBLAS would split the product across threads, and
            # on a busy machine waiting for those threads costs milliseconds at the tail (measured
            # P95 7.9 ms for 928 rows). Blocks below its threading threshold stay on this thread.
            blocks = [x @ self.weight[a : a + _GEMV_BLOCK].T for a in range(0, rows, _GEMV_BLOCK)]
            blocked: npt.NDArray[np.float32] = np.concatenate(blocks, axis=1) + self.bias
            return blocked
        return x @ self.weight.T + self.bias  # type: ignore[no-any-return]

    def quantized(self) -> DenseLayer:
        """This layer with INT8 per-row weights (itself if already quantised)."""
        if self.scale is not None:
            return self
        q, scale = quantize_rows(self.weight)
        return DenseLayer(q, self.bias, scale)


@dataclass(frozen=True)
class KindAnchors:
    """Embeddings of KB names grouped by kind; turns a query vector into one max-cosine per kind."""

    vectors: DenseLayer
    """(names, dim) rows sorted by kind; bias zero."""
    starts: npt.NDArray[np.int64]
    """Index of each kind's first row (for `np.maximum.reduceat`)."""
    kinds: tuple[str, ...]

    @classmethod
    def build(cls, vectors: FloatArray, kinds: Sequence[str]) -> KindAnchors:
        """Group name vectors (n, dim) by their kind (n,); kinds come out sorted by name."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or len(kinds) != v.shape[0] or v.shape[0] == 0:
            raise ValueError("anchors need one kind per vector and at least one vector")
        order = sorted(range(len(kinds)), key=lambda i: (kinds[i], i))
        sorted_kinds = [kinds[i] for i in order]
        names = tuple(sorted(set(sorted_kinds)))
        starts = np.array([sorted_kinds.index(k) for k in names], dtype=np.int64)
        layer = DenseLayer(np.ascontiguousarray(v[order]), np.zeros(len(order), dtype=np.float32))
        return cls(layer, starts, names)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.vectors.weight.shape[1])

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(n, kinds) highest cosine per kind (vectors are L2-normalised, so dot = cosine)."""
        similarities = self.vectors(x)
        out: npt.NDArray[np.float32] = np.maximum.reduceat(similarities, self.starts, axis=1)
        return out

    def quantized(self) -> KindAnchors:
        """The anchors themselves: they are a lookup table, not head weights, and stay float32.

        Quantising them would not change the features measurably but would cost ~8x their
        latency, since numpy multiplies int8 matrices without BLAS.
        """
        return self


@dataclass(frozen=True)
class IntentPrediction:
    """The most probable intent of one query and its softmax probability."""

    label: str
    index: int
    confidence: float


class IntentClassifier:
    """A trained head: layers (ReLU between them), its labels and the embedding model it expects."""

    def __init__(
        self,
        layers: Sequence[DenseLayer],
        labels: Sequence[str],
        model_id: str,
        meta: Mapping[str, Any] | None = None,
        anchors: KindAnchors | None = None,
        features: QueryFeatures | None = None,
    ):
        if not layers:
            raise ValueError("a classifier needs at least one layer")
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise ValueError("labels must be at least two distinct names")
        if layers[-1].weight.shape[0] != len(labels):
            raise ValueError(f"last layer has {layers[-1].weight.shape[0]} outputs for {len(labels)} labels")
        for first, second in itertools.pairwise(layers):
            if first.weight.shape[0] != second.weight.shape[1]:
                raise ValueError("layer shapes do not chain")
        extra = features.dim if features is not None else 0
        expected_in = (anchors.dim + len(anchors.kinds) + extra) if anchors is not None else None
        if expected_in is not None and layers[0].weight.shape[1] != expected_in:
            raise ValueError(
                "first layer does not take the embedding plus one feature per anchor kind "
                "plus the query text features"
            )
        if layers[0].weight.shape[1] <= extra:
            raise ValueError("first layer is too narrow for the query text features")
        self.layers = tuple(layers)
        self.anchors = anchors
        self.features = features
        self.labels = tuple(labels)
        self.model_id = model_id
        self.meta: dict[str, Any] = dict(meta or {})
        self._index = {label: i for i, label in enumerate(self.labels)}
        # The text-feature block is mostly zeros (a few dozen n-grams of 2048 buckets): for a few
        # queries, layer 0 is a matmul over the dense columns plus the sum of the weight rows of
        # the non-zero features. A full (classes x 2500) product instead crosses OpenBLAS's
        # threading threshold and measured P95 4-8 ms at 200 classes on a busy machine.
        self._sparse_first: tuple[DenseLayer, npt.NDArray[Any]] | None = None
        if features is not None:
            first = layers[0]
            split = first.weight.shape[1] - features.dim
            dense = DenseLayer(np.ascontiguousarray(first.weight[:, :split]), first.bias, first.scale)
            self._sparse_first = (dense, np.ascontiguousarray(first.weight[:, split:].T))

    @property
    def dim(self) -> int:
        """Input (embedding) dimension."""
        if self.anchors is not None:
            return self.anchors.dim
        extra = self.features.dim if self.features is not None else 0
        return int(self.layers[0].weight.shape[1]) - extra

    @property
    def needs_text(self) -> bool:
        """Whether `logits` needs the query texts as well as their vectors."""
        return self.features is not None

    @property
    def precision(self) -> Precision:
        """'int8' when the weights are quantised."""
        return "int8" if self.layers[0].scale is not None else "fp32"

    def index_of(self, label: str) -> int:
        """Class index of a label; KeyError when unknown."""
        return self._index[label]

    def logits(self, vectors: FloatArray, texts: Sequence[str] | None = None) -> npt.NDArray[np.float32]:
        """Raw scores, (n, classes), for (n, dim) or (dim,) input and, if `needs_text`, the n texts."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {np.shape(vectors)}")
        parts = [x]
        if self.anchors is not None:
            parts.append(self.anchors(x))
        layers = self.layers
        if self.features is not None:
            if texts is None or len(texts) != x.shape[0]:
                raise ValueError("this head reads the query text too: pass one text per vector")
            q = self.features(texts)
            if self._sparse_first is not None and x.shape[0] <= _FEW_QUERIES:
                dense, text_rows = self._sparse_first
                x = dense(np.concatenate(parts, axis=1) if len(parts) > 1 else x)
                for row, out in zip(q, x, strict=True):
                    active = np.flatnonzero(row)
                    contribution = row[active] @ text_rows[active]
                    out += contribution * dense.scale if dense.scale is not None else contribution
                if len(layers) == 1:
                    return x
                x, layers = np.maximum(x, 0.0), layers[1:]
                return self._rest(x, layers)
            parts.append(q)
        if len(parts) > 1:
            x = np.concatenate(parts, axis=1)
        return self._rest(x, layers)

    @staticmethod
    def _rest(x: npt.NDArray[np.float32], layers: Sequence[DenseLayer]) -> npt.NDArray[np.float32]:
        for layer in layers[:-1]:
            x = np.maximum(layer(x), 0.0)
        return layers[-1](x)

    def predict_proba(
        self, vectors: FloatArray, texts: Sequence[str] | None = None
    ) -> npt.NDArray[np.float32]:
        """Softmax probabilities, (n, classes)."""
        z = self.logits(vectors, texts)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict(
        self, vectors: FloatArray, texts: Sequence[str] | None = None
    ) -> tuple[IntArray, npt.NDArray[np.float32]]:
        """Class index and its probability for every row."""
        p = self.predict_proba(vectors, texts)
        idx = p.argmax(axis=1)
        return idx.astype(np.int64), p[np.arange(len(idx)), idx]

    def classify(self, vector: FloatArray, text: str | None = None) -> IntentPrediction:
        """The top intent of one query vector and its text (the router's per-request call)."""
        z = self.logits(vector, None if text is None else [text])[0]
        i = int(z.argmax())
        confidence = float(1.0 / np.exp(z - z[i]).sum())
        return IntentPrediction(self.labels[i], i, confidence)

    def quantized(self) -> IntentClassifier:
        """A copy with INT8 per-row weights."""
        return IntentClassifier(
            [layer.quantized() for layer in self.layers],
            self.labels,
            self.model_id,
            self.meta,
            self.anchors.quantized() if self.anchors is not None else None,
            self.features,
        )

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: Path, meta: Mapping[str, Any] | None = None) -> None:
        """Write head.npz (float32 weights), labels.json and meta.json into `directory`."""
        if self.precision != "fp32":
            raise ValueError("save the float32 classifier; INT8 is derived at load time")
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, npt.NDArray[Any]] = {}
        for i, layer in enumerate(self.layers):
            arrays[f"w{i}"] = layer.weight
            arrays[f"b{i}"] = layer.bias
        if self.anchors is not None:
            arrays["anchor_vectors"] = self.anchors.vectors.weight
            arrays["anchor_starts"] = self.anchors.starts
        np.savez(directory / WEIGHTS_FILE, **arrays)  # type: ignore[arg-type]
        (directory / LABELS_FILE).write_text(
            json.dumps({"labels": list(self.labels)}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        if self.features is not None:
            (directory / FEATURES_FILE).write_text(
                json.dumps(self.features.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
            )
        else:
            (directory / FEATURES_FILE).unlink(missing_ok=True)  # a stale table from an older head
        full = {
            **self.meta,
            **(meta or {}),
            "format": FORMAT_VERSION,
            "embedding_model_id": self.model_id,
            "dim": self.dim,
            "classes": len(self.labels),
            "layers": len(self.layers),
            "anchor_kinds": list(self.anchors.kinds) if self.anchors is not None else [],
            "query_features": self.features.dim if self.features is not None else 0,
        }
        (directory / META_FILE).write_text(
            json.dumps(full, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        self.meta = {k: v for k, v in full.items()}

    @classmethod
    def load(cls, directory: Path, *, model_id: str, precision: Precision = "fp32") -> IntentClassifier:
        """Read a saved head; refuses one trained on another embedding model (`ModelMismatch`)."""
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be 'fp32' or 'int8', not {precision!r}")
        try:
            meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
            labels = json.loads((directory / LABELS_FILE).read_text(encoding="utf-8"))["labels"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{directory}: not a trained intent classifier ({exc})") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported classifier format {meta.get('format')!r}")
        trained_on = meta.get("embedding_model_id")
        if trained_on != model_id:
            raise ModelMismatch(
                f"{directory}: classifier was trained on embeddings of {trained_on!r}, "
                f"but queries are embedded by {model_id!r}; retrain it (`intents train`)"
            )
        with np.load(directory / WEIGHTS_FILE) as data:
            count = int(meta.get("layers", 0))
            if count < 1 or any(f"w{i}" not in data or f"b{i}" not in data for i in range(count)):
                raise ValueError(f"{directory}: {WEIGHTS_FILE} lacks the layers meta.json lists")
            layers = [
                DenseLayer(
                    np.ascontiguousarray(data[f"w{i}"], dtype=np.float32),
                    np.ascontiguousarray(data[f"b{i}"], dtype=np.float32),
                )
                for i in range(count)
            ]
            anchors = None
            anchor_kinds = [str(k) for k in meta.get("anchor_kinds") or []]
            if anchor_kinds:
                if "anchor_vectors" not in data or "anchor_starts" not in data:
                    raise ValueError(f"{directory}: meta.json lists anchor kinds but {WEIGHTS_FILE} has none")
                vectors = np.ascontiguousarray(data["anchor_vectors"], dtype=np.float32)
                anchors = KindAnchors(
                    DenseLayer(vectors, np.zeros(vectors.shape[0], dtype=np.float32)),
                    np.asarray(data["anchor_starts"], dtype=np.int64),
                    tuple(anchor_kinds),
                )
        features = None
        if meta.get("query_features"):
            try:
                record = json.loads((directory / FEATURES_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"{directory}: meta.json lists query features but {FEATURES_FILE} is unreadable ({exc})"
                ) from exc
            features = QueryFeatures.from_json(record)
            if features.dim != meta["query_features"]:
                raise ValueError(
                    f"{directory}: {FEATURES_FILE} gives {features.dim} features, "
                    f"meta.json {meta['query_features']}"
                )
        classifier = cls(layers, [str(label) for label in labels], str(trained_on), meta, anchors, features)
        if classifier.dim != meta.get("dim"):
            raise ModelMismatch(f"{directory}: weights are {classifier.dim}-d, meta says {meta.get('dim')}")
        return classifier.quantized() if precision == "int8" else classifier


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
