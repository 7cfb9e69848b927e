"""The intent head: a small softmax classifier on the query embedding the search already computed.

No second encoder pass: the input is the one L2-normalised query vector. The head is linear or
has one ReLU hidden layer; it is trained by `retrieval.training.intents.train` and only loaded,
quantised and applied here.

Optionally the head also sees **KB anchor features**: for every KB kind, the highest cosine
between the query vector and the embeddings of that kind's titles and aliases (one extra
(names x dim) matmul on the same vector; no text, no second encoder pass). A general embedding
cannot tell that "栖梧琴" is an item of this world; the nearest KB names can.

And optionally **query text features** (`retrieval.routing.features.QueryFeatures`): the KB kinds
of the names the query text contains and hashed character n-grams of its wording around them.
They come from the query string alone (no encoder pass), so `logits`/`classify` then need the
texts along with the vectors.

The training's input standardisation is folded into the first layer, so inference is a plain
matmul. Inference can run with
INT8 weights quantised per output row (symmetric, one float scale per row): the file stays
float32 and quantisation happens at load, so one trained head serves both precisions.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from retrieval.errors import ModelMismatch
from retrieval.routing.features import QueryFeatures

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
Precision = Literal["fp32", "int8"]

FORMAT_VERSION = 1
WEIGHTS_FILE = "head.npz"
LABELS_FILE = "labels.json"
FEATURES_FILE = "features.json"
META_FILE = "meta.json"
CLASS_WEIGHTINGS = ("none", "inverse", "inverse_sqrt", "effective")


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
