"""Sentence-aware chunking keeps sentences whole and spans exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrieval.chunking import chunk_text


@pytest.mark.unit
def test_chunks_end_at_sentence_punctuation() -> None:
    text = "沈青崖生于玄霜城。" * 10 + "他问道：“你可知罪？”" * 5
    chunks = chunk_text(text, max_chars=40, min_chars=5)
    assert all(len(c.text) <= 40 for c in chunks)
    assert all(c.text.endswith(("。", "”")) for c in chunks)
    assert "".join(c.text for c in chunks) == text


@pytest.mark.unit
def test_long_sentence_is_cut_at_clauses_then_hard() -> None:
    text = "，".join(["甲乙丙丁戊"] * 30) + "。"
    chunks = chunk_text(text, max_chars=20, min_chars=1)
    assert all(len(c.text) <= 20 for c in chunks)
    assert "".join(c.text for c in chunks) == text
    assert chunk_text("无" * 45, max_chars=20, min_chars=1)[0].text == "无" * 20


@pytest.mark.unit
def test_short_tail_joins_previous_chunk() -> None:
    chunks = chunk_text("一二三四五六七八九十。" * 3 + "尾。", max_chars=33, min_chars=5)
    assert len(chunks) == 1 and chunks[0].text.endswith("尾。")


@pytest.mark.unit
@given(st.text(alphabet="天地玄黄宇宙洪荒。！？，\n ab", max_size=600), st.integers(5, 80))
def test_spans_point_at_the_source(text: str, max_chars: int) -> None:
    for chunk in chunk_text(text, max_chars=max_chars, min_chars=3):
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip() == chunk.text and chunk.text
        assert len(chunk.text) <= int(max_chars * 1.5)
