"""Text folding shared by indexing, querying and the cache."""

from __future__ import annotations

import pytest

from retrieval.text import fold, normalise, to_simplified


def test_normalise_folds_width_and_case() -> None:
    assert normalise("ＡＢＣ１２３") == "abc123"


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        ("顧青梧", "顾青梧"),
        ("雲霄閣的師父是誰", "云霄阁的师父是谁"),
        ("沈青崖", "沈青崖"),
        ("abc 123", "abc 123"),
    ],
)
def test_to_simplified_folds_traditional_and_keeps_the_rest(traditional: str, simplified: str) -> None:
    assert to_simplified(traditional) == simplified


def test_to_simplified_keeps_length_so_offsets_hold() -> None:
    text = "蕭瀟在舊書樓讀《歸藏經》，說：「劍氣縱橫三萬里」。"
    assert len(to_simplified(text)) == len(text)


def test_fold_is_normalise_then_simplified() -> None:
    assert fold("ＡＢＣ顧青梧") == "abc顾青梧"
    assert fold("顧青梧") == fold("顾青梧")
