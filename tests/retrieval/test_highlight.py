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
