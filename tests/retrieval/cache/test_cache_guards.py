"""Guards that keep near-identical vectors of different questions from sharing an answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrieval.cache.guards import (
    GuardSignature,
    chinese_numeral_value,
    guard_rejection,
    guard_signature,
    negations_in,
    numbers_in,
)
from retrieval.cache.protocol import CacheKey, filters_key, normalise_query
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.types import SearchFilter


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    cache_dir: Path = tmp_path_factory.mktemp("jieba")
    return JiebaTokenizer(["林动", "林炎", "沈青崖", "无双城"], mode="precise", cache_dir=cache_dir)


def signature(tokenizer: JiebaTokenizer, query: str) -> GuardSignature:
    text = normalise_query(query)
    return guard_signature(text, tokenizer.entities(text))


@pytest.mark.unit
def test_normalised_query_ignores_width_case_spacing_and_trailing_punctuation() -> None:
    assert normalise_query("  林动的师父是谁？ ") == "林动的师父是谁"
    assert normalise_query("ＡＢＣ  剑法!!") == "abc 剑法"
    assert normalise_query("林动，林炎是谁。") == "林动,林炎是谁"  # inner punctuation stays
    assert CacheKey.for_query("林动的师父是谁?").digest == CacheKey.for_query("林动的师父是谁？").digest


@pytest.mark.unit
def test_key_digest_separates_every_field() -> None:
    base = CacheKey.for_query("林动的师父是谁")
    variants = [
        CacheKey.for_query("林动的师父是谁", filters=filters_key(SearchFilter.build(kinds=["character"]))),
        CacheKey.for_query("林动的师父是谁", mode="sparse"),
        CacheKey.for_query("林动的师父是谁", route="character"),
        CacheKey.for_query("林动的师父是谁", config_version="m3e-small:top10"),
    ]
    assert len({base.digest, *(k.digest for k in variants)}) == 5
    assert len({base.partition, *(k.partition for k in variants)}) == 5
    assert CacheKey.for_query("林动").partition == CacheKey.for_query("林炎").partition


@pytest.mark.unit
def test_empty_query_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        CacheKey.for_query(" ？ ")


@pytest.mark.unit
def test_filters_key_is_canonical() -> None:
    a = SearchFilter.build(kinds=["place", "character"], metadata={"book": "b1"})
    b = SearchFilter.build(kinds=["character", "place"], metadata={"book": "b1"})
    assert filters_key(a) == filters_key(b) != ""
    assert filters_key(None) == filters_key(SearchFilter()) == ""


@pytest.mark.unit
def test_swapped_entity_is_refused(tokenizer: JiebaTokenizer) -> None:
    assert guard_rejection(
        signature(tokenizer, "林动的师父是谁"), signature(tokenizer, "林炎的师父是谁")
    ) == ("entities")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("沈青崖会用剑吗", "沈青崖不会用剑吗"),
        ("林动有师父吗", "林动没有师父吗"),
        ("林动是人族", "林动不是人族"),
        ("除了林动还有谁去了无双城", "林动和谁去了无双城"),
        ("林动很强", "林动很强但是输了"),
        ("is 林动 human", "is 林动 not human"),
    ],
)
def test_negation_or_contrast_on_one_side_is_refused(
    tokenizer: JiebaTokenizer, cached: str, incoming: str
) -> None:
    reason = guard_rejection(signature(tokenizer, cached), signature(tokenizer, incoming))
    assert reason == "negation"


@pytest.mark.unit
def test_words_that_only_look_negative_do_not_refuse(tokenizer: JiebaTokenizer) -> None:
    assert negations_in("林动非常强") == frozenset()
    assert negations_in("无论如何") == frozenset()
    # An entity containing 无 is masked before the scan; equal entity sets then compare equal.
    assert guard_rejection(signature(tokenizer, "无双城在哪"), signature(tokenizer, "无双城位于哪里")) is None


@pytest.mark.unit
def test_different_numbers_are_refused_and_equal_values_pass(tokenizer: JiebaTokenizer) -> None:
    third, fifth = signature(tokenizer, "第三章讲了什么"), signature(tokenizer, "第五章讲了什么")
    assert guard_rejection(third, fifth) == "numbers"
    assert guard_rejection(third, signature(tokenizer, "第3章讲了什么")) is None
    assert numbers_in("第12卷第3.50页") == {"12", "3.5"}
    assert numbers_in("他一直一起练剑") == frozenset()
    assert numbers_in("另一种问法") == frozenset()
    assert numbers_in("第一个师父") == {"1"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("十", 10),
        ("十二", 12),
        ("二十三", 23),
        ("一百零五", 105),
        ("两千", 2000),
        ("三万五千", 35000),
        ("一亿二千万", 120_000_000),
        ("二〇二三", 2023),
        ("零", 0),
    ],
)
def test_chinese_numerals_are_read_by_value(numeral: str, value: int) -> None:
    assert chinese_numeral_value(numeral) == value


@pytest.mark.unit
@given(st.text(max_size=40), st.frozensets(st.text(min_size=2, max_size=4), max_size=3))
def test_a_query_never_refuses_itself(text: str, entities: frozenset[str]) -> None:
    sig = guard_signature(normalise_query(text), entities)
    assert guard_rejection(sig, sig) is None
