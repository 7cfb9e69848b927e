"""jieba tokenisation with the domain lexicon."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.sparse.tokenizer import JiebaTokenizer


@pytest.mark.unit
def test_lexicon_keeps_names_whole(tmp_path: Path) -> None:
    plain = JiebaTokenizer([], mode="precise", cache_dir=tmp_path)
    with_lexicon = JiebaTokenizer(["沈青崖", "断剑客"], mode="precise", cache_dir=tmp_path)
    text = "沈青崖人称断剑客"
    assert "沈青崖" not in plain.tokenize(text) or "断剑客" not in plain.tokenize(text)
    assert {"沈青崖", "断剑客"} <= set(with_lexicon.tokenize(text))
    assert with_lexicon.entities("断剑客沈青崖的师父是谁") == {"沈青崖", "断剑客"}


@pytest.mark.unit
def test_normalises_width_case_and_drops_stopwords_and_punctuation(tmp_path: Path) -> None:
    tok = JiebaTokenizer([], mode="search", cache_dir=tmp_path)
    assert tok.tokenize("ＡＢＣ！") == tok.tokenize("abc")
    tokens = tok.tokenize("他的剑是什么？")
    assert "的" not in tokens and "？" not in tokens and "什么" not in tokens


@pytest.mark.unit
def test_search_mode_adds_sub_words(tmp_path: Path) -> None:
    search = JiebaTokenizer([], mode="search", cache_dir=tmp_path).tokenize("中华人民共和国")
    precise = JiebaTokenizer([], mode="precise", cache_dir=tmp_path).tokenize("中华人民共和国")
    assert precise == ["中华人民共和国"]
    assert "中华" in search and "中华人民共和国" in search


@pytest.mark.unit
def test_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="jieba mode"):
        JiebaTokenizer([], mode="full")


@pytest.mark.unit
def test_traditional_and_simplified_give_the_same_tokens(tmp_path: Path) -> None:
    # The lexicon is written in simplified characters; a traditional query must still find its names.
    tok = JiebaTokenizer(["顾青梧", "栖岚剑宗"], mode="search", cache_dir=tmp_path)
    assert tok.tokenize("顧青梧是棲嵐劍宗的弟子") == tok.tokenize("顾青梧是栖岚剑宗的弟子")
    assert {"顾青梧", "栖岚剑宗"} <= set(tok.tokenize("顧青梧是棲嵐劍宗的弟子"))
    assert tok.entities("顧青梧的師父") == {"顾青梧"}
    # A lexicon written in traditional characters is folded too.
    assert JiebaTokenizer(["顧長庚"], cache_dir=tmp_path).lexicon == {"顾长庚"}
