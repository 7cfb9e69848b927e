"""Relation questions and the lexicon they are read against."""

from __future__ import annotations

import pytest

from retrieval.understanding.config import UnderstandingConfig
from retrieval.understanding.lexicon import Lexicon, LexiconEntry
from retrieval.understanding.relations import entity_question
from retrieval.understanding.understander import QueryUnderstanding

pytestmark = pytest.mark.unit

ENTRIES = [
    LexiconEntry("沈青崖", ("断剑客",), "生于青石镇，其父沈砚秋。十五岁入照影峰，拜顾长庚为师。"),
    LexiconEntry("顾长庚", ("照影剑主",), "照影峰峰主，沈青崖的师父。"),
    LexiconEntry("沈砚秋", (), "沈青崖之父。"),
    LexiconEntry("青石镇", (), "霜陵州小镇。"),
    LexiconEntry("照影峰", (), "栖岚剑宗第七峰。"),
]


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.build(ENTRIES)


def test_lexicon_counts_mentions_and_who_names_whom(lexicon: Lexicon) -> None:
    assert lexicon.titles_of["断剑客"] == {"沈青崖"}
    assert lexicon.prior("沈青崖") > lexicon.prior("青石镇") > 0 and lexicon.prior("无名") == 0
    assert [m.title for m in lexicon.named_in["沈青崖"]] == ["青石镇", "沈砚秋", "照影峰", "顾长庚"]


def test_the_master_question_asks_about_his_entry_and_names_the_master_near_its_cue(lexicon: Lexicon) -> None:
    question = entity_question(lexicon, "沈青崖的师父是谁")
    assert question is not None and question.asked == ("沈青崖",)
    assert set(question.named) == {"青石镇", "沈砚秋", "照影峰", "顾长庚"}
    # 顾长庚 sits next to 师 ("拜顾长庚为师"); 青石镇, far from 师 and 父, comes last.
    assert question.named.index("顾长庚") < question.named.index("青石镇")
    assert question.titles[0] == "沈青崖"


def test_two_names_joined_ask_about_both_and_plain_names_ask_nothing(lexicon: Lexicon) -> None:
    both = entity_question(lexicon, "沈青崖和顾长庚是什么关系")
    assert both is not None and both.asked == ("沈青崖", "顾长庚")
    assert entity_question(lexicon, "沈青崖") is None
    assert entity_question(lexicon, "断剑客的师父") is not None  # an alias asks about its entry
    assert entity_question(lexicon, "剑法的来历") is None  # no entity


def test_a_question_word_beside_a_name_asks_about_its_entry(lexicon: Lexicon) -> None:
    # No 的 after the name: "是谁" makes it a question about what 照影峰's entry names.
    question = entity_question(lexicon, "照影峰是谁开创的")
    assert question is not None and question.asked == ("照影峰",)
    who = entity_question(lexicon, "沈青崖拜谁为师")
    assert who is not None and who.asked == ("沈青崖",) and who.named[0] == "顾长庚"
    assert entity_question(lexicon, "照影峰风景") is None  # a name, no question word: a lookup
    assert entity_question(lexicon, "谁是剑客") is None  # a question word, no name


def test_understanding_corrects_first_then_reads_the_question(lexicon: Lexicon) -> None:
    understood = QueryUnderstanding(lexicon).understand("沈青涯的师父")
    assert understood.text == "沈青崖的师父" and understood.corrected == {"沈青涯": "沈青崖"}
    assert understood.question is not None and understood.question.asked == ("沈青崖",)
    off = QueryUnderstanding(lexicon, UnderstandingConfig(correct_names=False, entity_source=False))
    assert off.understand("沈青涯的师父").corrected == {} and off.understand("沈青崖的师父").question is None
