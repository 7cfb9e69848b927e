"""Classification quality of the intent head: macro-F1, per-class scores, confusion matrix, plots.

Everything here is plain numpy over integer class ids, so the training loop (early stopping on
validation macro-F1) and the offline reports share one implementation.

Files a report writes (`ClassificationReport.write`)::

    report.json       every figure below, machine-readable
    report.md         the same as tables
    confusion.json    {"labels": [...], "matrix": [[...]], ...}  (the format `eval.confusion` reads)
    confusion.png     heat map; axis labels are the intent ids (ASCII), so no CJK font is needed
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def confusion_matrix(
    y_true: Sequence[int] | IntArray, y_pred: Sequence[int] | IntArray, n_classes: int
) -> IntArray:
    """Counts with rows = true class, columns = predicted class."""
    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    if true.shape != pred.shape or true.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-D and of equal length")
    if n_classes < 1:
        raise ValueError("n_classes must be >= 1")
    if true.size and (min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= n_classes):
        raise ValueError(f"class ids must lie in [0, {n_classes})")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def per_class_scores(matrix: IntArray) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
    """Precision, recall, F1 and support per class; 0 where a ratio has no denominator."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    predicted = m.sum(axis=0)
    support = m.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support.astype(np.int64)


def macro_f1_from_matrix(matrix: IntArray) -> float:
    """Unweighted mean F1 over the classes that occur as truth or as prediction.

    Classes absent from both are left out: a validation split that happens to lack a rare class
    should not score that class as a zero.
    """
    m = np.asarray(matrix)
    _, _, f1, support = per_class_scores(m)
    present = (support > 0) | (m.sum(axis=0) > 0)
    return float(f1[present].mean()) if present.any() else 0.0


def macro_f1(y_true: Sequence[int] | IntArray, y_pred: Sequence[int] | IntArray, n_classes: int) -> float:
    """Macro-F1 of predicted against true class ids."""
    return macro_f1_from_matrix(confusion_matrix(y_true, y_pred, n_classes))


@dataclass(frozen=True)
class ClassScore:
    """Precision, recall and F1 of one class."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ConfusedPair:
    """A (true, predicted) pair off the diagonal: how often and what share of the true class."""

    true: str
    predicted: str
    count: int
    share: float


@dataclass(frozen=True)
class ClassificationReport:
    """Everything the reports show about one labelled set."""

    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    per_class: tuple[ClassScore, ...]
    macro_f1: float
    accuracy: float
    confused_pairs: tuple[ConfusedPair, ...]
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form figures shown with the report (e.g. the INT8 head's macro-F1)."""

    @classmethod
    def build(
        cls,
        y_true: Sequence[int] | IntArray,
        y_pred: Sequence[int] | IntArray,
        labels: Sequence[str],
        *,
        top_pairs: int = 10,
        source: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> ClassificationReport:
        """Score class ids against `labels` (index i names class i)."""
        matrix = confusion_matrix(y_true, y_pred, len(labels))
        precision, recall, f1, support = per_class_scores(matrix)
        total = int(matrix.sum())
        accuracy = float(np.trace(matrix) / total) if total else 0.0
        scores = tuple(
            ClassScore(labels[i], float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i in range(len(labels))
        )
        return cls(
            labels=tuple(labels),
            matrix=tuple(tuple(int(v) for v in row) for row in matrix),
            per_class=scores,
            macro_f1=macro_f1_from_matrix(matrix),
            accuracy=accuracy,
            confused_pairs=most_confused(matrix, labels, top_pairs),
            source=source,
            extra=dict(extra or {}),
        )

    def confusion_json(self) -> dict[str, Any]:
        """The confusion matrix in the `eval.confusion` file format."""
        return {
            "labels": list(self.labels),
            "matrix": [list(row) for row in self.matrix],
            "rows": "labelled intent",
            "columns": "predicted intent",
            "source": self.source,
        }

    def to_json(self) -> dict[str, Any]:
        """All figures as plain JSON types."""
        return {
            "source": self.source,
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
            "samples": int(sum(sum(row) for row in self.matrix)),
            **dict(self.extra),
            "per_class": [asdict(s) for s in self.per_class],
            "most_confused": [asdict(p) for p in self.confused_pairs],
            "confusion": self.confusion_json(),
        }

    def to_markdown(self, title: str = "Intent classification") -> str:
        """Tables of the summary, per-class scores and the most-confused pairs."""
        lines = [
            f"# {title}",
            "",
            f"Source: {self.source or '-'}  ",
            f"Samples: {sum(sum(row) for row in self.matrix)}, "
            f"macro-F1 **{self.macro_f1:.4f}**, accuracy {self.accuracy:.4f}",
            *(f"{key}: {value}  " for key, value in self.extra.items()),
            "",
            "| intent | precision | recall | F1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {s.label} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.support} |"
            for s in self.per_class
        ]
        lines += ["", "## Most confused (true -> predicted)", ""]
        if self.confused_pairs:
            lines += ["| true | predicted | count | share of true |", "| --- | --- | ---: | ---: |"]
            lines += [
                f"| {p.true} | {p.predicted} | {p.count} | {p.share:.1%} |" for p in self.confused_pairs
            ]
        else:
            lines.append("No confusions.")
        return "\n".join(lines) + "\n"

    def write(self, out: Path, title: str = "Intent classification") -> list[Path]:
        """Write report.json, report.md, confusion.json and confusion.png into `out`."""
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "report.json", out / "report.md", out / "confusion.json", out / "confusion.png"]
        files[0].write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        files[1].write_text(self.to_markdown(title), encoding="utf-8")
        files[2].write_text(
            json.dumps(self.confusion_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        plot_confusion(
            np.asarray(self.matrix), self.labels, files[3], f"{title} (macro-F1 {self.macro_f1:.3f})"
        )
        return files


def most_confused(matrix: IntArray, labels: Sequence[str], top: int = 10) -> tuple[ConfusedPair, ...]:
    """Off-diagonal cells by count (ties: by share, then by label order, so the list is stable)."""
    m = np.asarray(matrix)
    support = m.sum(axis=1)
    pairs = [
        ConfusedPair(labels[i], labels[j], int(m[i, j]), float(m[i, j] / support[i]))
        for i in range(m.shape[0])
        for j in range(m.shape[1])
        if i != j and m[i, j] > 0
    ]
    pairs.sort(key=lambda p: (-p.count, -p.share, labels.index(p.true), labels.index(p.predicted)))
    return tuple(pairs[:top])


def plot_confusion(matrix: IntArray, labels: Sequence[str], path: Path, title: str) -> None:
    """Heat map with counts; colours are row shares, so a rare class's errors show as clearly."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in CI
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    shares = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    n = len(labels)
    # Above ~40 classes the cell text is unreadable; the colours still show the structure.
    annotate = n <= 40
    size = max(4.0, min(0.6 * n + 2.5, 30.0))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if annotate:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(m[i, j])),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
        ax.set_xticks(range(n), list(labels), rotation=45, ha="right")
        ax.set_yticks(range(n), list(labels))
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("labelled intent")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of labelled row")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
