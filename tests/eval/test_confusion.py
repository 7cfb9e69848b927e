"""Intent confusion matrices: counting, validation, the file format."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.confusion import ConfusionMatrix

pytestmark = pytest.mark.unit


def test_from_pairs_counts_labelled_against_routed(tmp_path: Path) -> None:
    cm = ConfusionMatrix.from_pairs(
        [("character", "character"), ("character", "location"), ("location", "location"), ("item", "item")]
    )
    assert cm.labels == ("character", "item", "location")
    assert cm.matrix == ((1, 0, 1), (0, 1, 0), (0, 0, 1))
    assert cm.accuracy == 0.75
    cm.save(tmp_path / "confusion.json")
    assert ConfusionMatrix.load(tmp_path / "confusion.json") == cm


def test_malformed_matrices_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2x2"):
        ConfusionMatrix(("a", "b"), ((1, 0),))
    with pytest.raises(ValueError, match="unique"):
        ConfusionMatrix(("a", "a"), ((1, 0), (0, 1)))
    (tmp_path / "bad.json").write_text('{"labels": ["a"]}')
    with pytest.raises(ValueError, match="`labels` and `matrix`"):
        ConfusionMatrix.load(tmp_path / "bad.json")
