"""Classification reports: hand-computed scores, the confusion file format, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.confusion import ConfusionMatrix
from retrieval.training.intents.report import (
    ClassificationReport,
    confusion_matrix,
    macro_f1,
    per_class_scores,
)

pytestmark = pytest.mark.unit

LABELS = ["character", "location", "quote"]
# truth:     c c c c l l q q
# predicted: c c c l l c q l
TRUE = [0, 0, 0, 0, 1, 1, 2, 2]
PRED = [0, 0, 0, 1, 1, 0, 2, 1]


def test_scores_match_hand_computation() -> None:
    m = confusion_matrix(TRUE, PRED, 3)
    assert m.tolist() == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    precision, recall, f1, support = per_class_scores(m)
    # character P 3/4 R 3/4; location P 1/3 R 1/2; quote P 1/1 R 1/2
    np.testing.assert_allclose(precision, [0.75, 1 / 3, 1.0])
    np.testing.assert_allclose(recall, [0.75, 0.5, 0.5])
    np.testing.assert_allclose(f1, [0.75, 0.4, 2 / 3])
    assert support.tolist() == [4, 2, 2]
    assert macro_f1(TRUE, PRED, 3) == pytest.approx((0.75 + 0.4 + 2 / 3) / 3)


def test_absent_classes_do_not_count_as_zero() -> None:
    assert macro_f1([0, 1], [0, 1], 5) == 1.0
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix([0, 5], [0, 1], 3)


def test_report_files_use_the_eval_confusion_format(tmp_path: Path) -> None:
    report = ClassificationReport.build(TRUE, PRED, LABELS, source="unit", extra={"int8_macro_f1": 0.6})
    assert report.accuracy == pytest.approx(5 / 8)
    # All three confusions count 1; ties go to the larger share of the true class, then label order.
    assert [(p.true, p.predicted, p.share) for p in report.confused_pairs] == [
        ("location", "character", 0.5),
        ("quote", "location", 0.5),
        ("character", "location", 0.25),
    ]
    files = report.write(tmp_path)
    assert [f.name for f in files] == ["report.json", "report.md", "confusion.json", "confusion.png"]
    loaded = ConfusionMatrix.load(tmp_path / "confusion.json")
    assert loaded.labels == tuple(LABELS) and loaded.matrix[0] == (3, 1, 0)
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert data["macro_f1"] == pytest.approx(report.macro_f1) and data["int8_macro_f1"] == 0.6
    assert data["confusion"] == {**data["confusion"], "labels": LABELS}
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| quote | 1.000 | 0.500 | 0.667 | 2 |" in markdown and "Most confused" in markdown


def test_large_label_sets_still_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 120, 500)
    labels = [f"i{i}" for i in range(120)]
    ClassificationReport.build(y, (y + (rng.random(500) < 0.1)) % 120, labels).write(tmp_path)
    assert (tmp_path / "confusion.png").stat().st_size > 0
