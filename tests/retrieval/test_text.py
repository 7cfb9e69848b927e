"""Text folding shared by indexing, querying and the cache."""

from __future__ import annotations

import pytest

from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.text import fold, normalise, plain_question, question_form, to_simplified


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


@pytest.mark.parametrize(
    ("query", "plain"),
    [
        ("请问沈青崖的师父是谁呢", "沈青崖的师父是谁"),
        ("请问一下,法器分为哪几等", "法器分为哪几等"),  # the comma a wrapper leaves goes too
        ("你知道顾长庚吗", "顾长庚"),
        ("麻烦告诉我血衣侯", "血衣侯"),
        ("沈青崖 的师父 是谁", "沈青崖的师父是谁"),  # spaces inside Chinese
        ("milvus hnsw 索引", "milvus hnsw 索引"),  # spaces between Latin words stay
        ("去酒吧", "去酒吧"),  # 吧, 嘛 and 么 end words too
        ("这是什么", "这是什么"),
        ("请问", "请问"),  # a wrapper alone is the whole query: kept
        ("呢呢", "呢呢"),
        ("林动,林炎是谁", "林动,林炎是谁"),  # inner punctuation stays
    ],
)
def test_plain_question_drops_what_never_changes_the_question(query: str, plain: str) -> None:
    assert plain_question(query) == plain


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    return JiebaTokenizer(
        ["沈青崖", "何人谷", "月魇"], mode="precise", cache_dir=tmp_path_factory.mktemp("jieba")
    )


@pytest.mark.parametrize(
    ("query", "form"),
    [
        ("顾长庚的孪生哥哥是何人", "顾长庚的孪生哥哥是谁"),
        ("沈青崖是在什么地方筑基的", "沈青崖是在哪里筑基的"),
        ("沈青崖的母亲叫啥名字", "沈青崖的母亲叫什么名字"),
        ("承渊历从哪年开始算", "承渊历从哪一年开始算"),
        ("谁是月魇", "月魇是谁"),  # who-is inverted...
        ("什么是法器", "法器是什么"),
        ("为什么是他", "为什么是他"),  # ...but never why-is
        ("谁是沈青崖的师父是谁", "谁是沈青崖的师父是谁"),  # a second copula: left alone
        ("何人谷在哪儿", "何人谷在哪里"),  # a name holding a question word's characters stays whole
        ("谁是 milvus", "milvus是谁"),
    ],
)
def test_question_form_writes_question_words_one_way(cut: JiebaTokenizer, query: str, form: str) -> None:
    assert question_form(query, cut.words) == form
