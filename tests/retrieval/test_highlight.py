"""Highlight offsets and markup."""

from __future__ import annotations

import pytest

from retrieval.highlight import find_terms, mark


@pytest.mark.unit
def test_offsets_point_at_the_terms_and_longest_wins() -> None:
    text = "沈青崖人称断剑客，青崖二字取自ＡＢＣ山。"
    found = find_terms(text, ["沈青崖", "青崖", "abc", "不存在"])
    assert [(text[h.start : h.end], h.term) for h in found] == [
        ("沈青崖", "沈青崖"),
        ("青崖", "青崖"),
        ("ＡＢＣ", "abc"),
    ]


@pytest.mark.unit
def test_markup_escapes_html() -> None:
    text = "<b>剑</b>与剑"
    assert mark(text, find_terms(text, ["剑"])) == "&lt;b&gt;<em>剑</em>&lt;/b&gt;与<em>剑</em>"


@pytest.mark.unit
def test_terms_folded_to_simplified_mark_the_traditional_characters_as_written() -> None:
    text = "ﬁ顧青梧拜入棲嵐劍宗。"  # a ligature first: NFKC lengthens it, the offsets must still hold
    found = find_terms(text, ["顾青梧", "栖岚剑宗"])
    assert [(text[h.start : h.end], h.term) for h in found] == [
        ("顧青梧", "顾青梧"),
        ("棲嵐劍宗", "栖岚剑宗"),
    ]
    assert mark(text, found) == "ﬁ<em>顧青梧</em>拜入<em>棲嵐劍宗</em>。"
