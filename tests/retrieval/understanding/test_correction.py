"""Homophone name correction against a hand-made lexicon."""

from __future__ import annotations

import pytest

from retrieval.understanding.correction import CorrectionConfig, NameCorrector, readings, sound
from retrieval.understanding.lexicon import Lexicon, LexiconEntry

pytestmark = pytest.mark.unit

ENTRIES = [
    LexiconEntry("沈青崖", ("断剑客",), "霜陵州人，拜顾长庚为师。"),
    LexiconEntry("沈青岩", (), "沈青崖的堂兄。沈青崖与他只差一字。"),
    LexiconEntry("沈清涯", (), "行商。"),
    LexiconEntry("顾长庚", (), "沈青崖的师父。沈青崖入门时他已是峰主，沈青崖敬他。"),
    LexiconEntry("温照雪", (), "玄霜宫弟子。"),
    LexiconEntry("温赵雪", (), "同音的另一人。"),
]


@pytest.fixture(scope="module")
def corrector() -> NameCorrector:
    return NameCorrector(Lexicon.build(ENTRIES))


def test_readings_are_toneless_and_cover_heteronyms() -> None:
    assert sound("沈青崖") == ("shen", "qing", "ya")
    assert {"zhang", "chang"} <= set(readings("长"))


def test_a_homophone_typo_reads_as_the_much_more_mentioned_name(corrector: NameCorrector) -> None:
    # 沈青涯 sounds like both 沈青崖 and 沈清涯, one character off each: 沈青崖 is mentioned far more.
    fixed = corrector.correct("沈青涯的师父是谁")
    assert fixed.text == "沈青崖的师父是谁" and fixed.corrected == {"沈青涯": "沈青崖"}
    # A heteronym read otherwise in the name (长 as chang) still matches.
    assert corrector.correct("顾长耕").corrected == {"顾长耕": "顾长庚"}


@pytest.mark.parametrize("query", ["沈青崖", "沈青岩", "沈清涯", "沈青崖和沈青岩", "沈青岩的师父"])
def test_names_that_exist_are_never_changed(corrector: NameCorrector, query: str) -> None:
    assert corrector.correct(query).corrected == {}
    assert corrector.correct(query).text == query


def test_two_equally_likely_names_mean_no_correction(corrector: NameCorrector) -> None:
    # 温兆雪 sounds like 温照雪 and 温赵雪 (one character off each), both mentioned once.
    assert corrector.correct("温兆雪").corrected == {}


def test_other_sounds_lengths_and_short_stretches_are_left_alone(corrector: NameCorrector) -> None:
    assert corrector.correct("沈青山的师父").corrected == {}  # shan is not ya
    assert corrector.correct("申请呀").corrected == {}  # the same sound, but every character differs
    margin_one = NameCorrector(Lexicon.build(ENTRIES), CorrectionConfig(min_chars=4))
    assert margin_one.correct("沈青涯").corrected == {}  # shorter than min_chars
