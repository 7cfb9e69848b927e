"""Intent confusion matrices: what the router chose against what a query is labelled.

File format (``confusion.json`` in a run folder; `report` draws every one it finds)::

    {
      "labels": ["character", "location", "lore"],      # row and column order
      "matrix": [[12, 1, 0], [0, 9, 2], [1, 0, 15]],    # matrix[i][j]: labelled labels[i],
                                                        # routed to labels[j]
      "rows": "labelled intent",                        # optional axis names
      "columns": "routed intent",
      "source": "quality routed on fixtures"            # optional free text
    }

`labels` is the union of labelled and predicted intents, so the matrix is square.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFUSION_FILE = "confusion.json"


@dataclass(frozen=True)
class ConfusionMatrix:
    """A square count matrix over `labels` (rows: labelled, columns: predicted)."""

    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    rows: str = "labelled intent"
    columns: str = "routed intent"
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(set(self.labels)) != n:
            raise ValueError("confusion labels must be unique")
        if len(self.matrix) != n or any(len(row) != n for row in self.matrix):
            raise ValueError(f"confusion matrix must be {n}x{n} to match its labels")
        if any(v < 0 for row in self.matrix for v in row):
            raise ValueError("confusion counts must be >= 0")

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], source: str = "") -> ConfusionMatrix:
        """Count (labelled, predicted) pairs."""
        pairs = list(pairs)
        labels = tuple(sorted({p for pair in pairs for p in pair}))
        index = {label: i for i, label in enumerate(labels)}
        counts = [[0] * len(labels) for _ in labels]
        for truth, predicted in pairs:
            counts[index[truth]][index[predicted]] += 1
        return cls(labels, tuple(tuple(row) for row in counts), source=source)

    @property
    def accuracy(self) -> float:
        """Share of the diagonal (nan when empty)."""
        total = sum(sum(row) for row in self.matrix)
        return sum(self.matrix[i][i] for i in range(len(self.labels))) / total if total else float("nan")

    def to_json(self) -> dict[str, Any]:
        """The file format above."""
        return {
            "labels": list(self.labels),
            "matrix": [list(row) for row in self.matrix],
            "rows": self.rows,
            "columns": self.columns,
            "source": self.source,
        }

    def save(self, path: Path) -> None:
        """Write as JSON."""
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ConfusionMatrix:
        """Read the file format above; ValueError when malformed."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "labels" not in data or "matrix" not in data:
            raise ValueError(f"{path}: expected an object with `labels` and `matrix`")
        return cls(
            tuple(str(label) for label in data["labels"]),
            tuple(tuple(int(v) for v in row) for row in data["matrix"]),
            str(data.get("rows") or "labelled intent"),
            str(data.get("columns") or "routed intent"),
            str(data.get("source") or ""),
        )
