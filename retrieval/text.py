"""Text normalisation shared by indexing, querying and the cache, so all three fold text alike.

Also where jieba is imported, once, for every module that segments text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache

import opencc

# jieba 0.42 imports pkg_resources, whose deprecation warning tells our users nothing they can act
# on (jieba reads its dictionary from its own package files either way).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
import jieba  # noqa: E402

# jieba adds its own stderr handler and pins its logger at DEBUG, so each of its lines would be
# written twice (plain, then as the application's JSON). Its records go to the root logger like
# any library's, at the application's level: its start-up lines are DEBUG.
_jieba_log = logging.getLogger("jieba")
_jieba_log.handlers.clear()
_jieba_log.setLevel(logging.NOTSET)

__all__ = [
    "ANALYSIS",
    "COPULA",
    "MODAL_PARTICLES",
    "QUESTION_BIGRAMS",
    "QUESTION_WORDS",
    "QUESTION_WRAPPERS",
    "fold",
    "jieba",
    "merge_question_phrases",
    "normalise",
    "plain_question",
    "question_form",
    "strip_wrappers",
    "to_simplified",
]

ANALYSIS = "nfkc-lower+opencc-t2s"
"""Names how `fold` treats text. Stored BM25 terms were made under one analysis: a store built
under another (before traditional characters were folded: "nfkc-lower") gives other tokens for
the same text, so whatever records an index records this too and a change is seen, not missed."""


def normalise(text: str) -> str:
    """NFKC (full-width to half-width) and lower case, so 'ＡＢＣ' and 'abc' index alike."""
    return unicodedata.normalize("NFKC", text).lower()


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    # Built once: loading OpenCC's dictionaries costs milliseconds, converting costs microseconds.
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional characters folded to simplified (OpenCC `t2s`), so 顧青梧 and 顾青梧 meet.

    Character for character: the result has the same length, so offsets into it are offsets into
    the original (highlights stay where they belong).
    """
    folded: str = _t2s().convert(text)
    return folded


def fold(text: str) -> str:
    """`normalise` then `to_simplified`: the form BM25 tokens, lexicon words and cache keys share."""
    return to_simplified(normalise(text))


QUESTION_WRAPPERS: tuple[str, ...] = (
    "请问一下",
    "请问",
    "请告诉我",
    "麻烦告诉我",
    "告诉我",
    "我想知道",
    "我想问一下",
    "我想问",
    "想知道",
    "想问一下",
    "你知道",
    "能不能告诉我",
    "可以告诉我",
    "帮我查一下",
    "帮我查查",
    "查一下",
    "一下",
)
"""Polite openings and closings of a question (simplified), stripped from either end, longest first."""

MODAL_PARTICLES = frozenset("吗呢啊呀哦啦呗")
"""Sentence-final particles that colour a question without changing what it asks. Not 吧, 嘛 or
么, which also end words (酒吧, 干嘛, 什么)."""

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACE_IN_CJK = re.compile(f"(?<=[{_CJK}])\\s+(?=[{_CJK}])")
_MIN_LEFT = 2
"""Characters a query keeps at least: '请问' alone, or '呢', is searched as typed."""


def strip_wrappers(text: str) -> str:
    """`text` without the `QUESTION_WRAPPERS` at either end (as often as they repeat)."""
    changed = True
    while changed:
        changed = False
        for wrapper in QUESTION_WRAPPERS:
            if text.startswith(wrapper) and len(text) - len(wrapper) >= _MIN_LEFT:
                text, changed = text[len(wrapper) :], True
            elif text.endswith(wrapper) and len(text) - len(wrapper) >= _MIN_LEFT:
                text, changed = text[: -len(wrapper)], True
    return text


def plain_question(text: str) -> str:
    """A folded query as it is searched: wrappers, final modal particles and spaces inside Chinese gone.

    '请问沈青崖的师父是谁呢', '沈青崖的师父是谁' and '沈青崖 的师父是谁' ask one question, so they
    are searched as one text and get one answer (and share one exact-cache entry). Only what
    never changes the question goes: spaces between Latin words, inner punctuation and every
    other word stay.
    """
    text = _SPACE_IN_CJK.sub("", text)
    while True:
        before = text
        text = strip_wrappers(text).strip()
        # What a wrapper leaves in front ('请问一下，法器...') is punctuation with nothing to say.
        start = 0
        while len(text) - start > _MIN_LEFT and unicodedata.category(text[start]).startswith("P"):
            start += 1
        text = text[start:].lstrip()
        while len(text) > _MIN_LEFT and text[-1] in MODAL_PARTICLES:
            text = text[:-1]
        # A particle may have stood before the final punctuation: '是谁呢？' -> '是谁'.
        end = len(text)
        while end > _MIN_LEFT and unicodedata.category(text[end - 1]).startswith("P"):
            end -= 1
        text = text[:end]
        if text == before:
            return text


QUESTION_WORDS: dict[str, str] = {
    "谁": "谁",
    "何人": "谁",
    "哪位": "谁",
    "谁人": "谁",
    "什么人": "谁",
    "哪里": "哪里",
    "哪儿": "哪里",
    "何处": "哪里",
    "何地": "哪里",
    "什么地方": "哪里",
    "哪个地方": "哪里",
    "什么": "什么",
    "啥": "什么",
    "何物": "什么",
    "为什么": "为什么",
    "为何": "为什么",
    "何故": "为什么",
    "怎么会": "为什么",
    "哪一年": "哪一年",
    "哪年": "哪一年",
    "何年": "哪一年",
    "多少": "多少",
    "几多": "多少",
    "如何": "怎样",
    "怎样": "怎样",
    "怎么样": "怎样",
}
"""Question words by kind. Only words of one meaning are merged: 什么时候 (when) stays apart from
哪一年 (which year), 怎么 (how / why) from both 怎样 and 为什么."""

QUESTION_BIGRAMS: dict[tuple[str, str], str] = {
    ("什么", "地方"): "什么地方",
    ("哪个", "地方"): "哪个地方",
    ("什么", "人"): "什么人",
    ("哪", "一年"): "哪一年",
    ("哪", "年"): "哪年",
}
"""Question phrases jieba's precise cut splits in two."""

COPULA = "是"
"""The copula; '谁是X' asks what 'X是谁' asks."""

_INVERTIBLE = frozenset(k for k, v in QUESTION_WORDS.items() if v in ("谁", "什么"))
"""Question words that may open "<word> 是 <rest>" = "<rest> 是 <word>" (who, what; not why)."""


def merge_question_phrases(tokens: list[str]) -> list[str]:
    """`tokens` with the question phrases a precise cut splits in two (`QUESTION_BIGRAMS`) rejoined."""
    merged: list[str] = []
    for token in tokens:
        if merged and (phrase := QUESTION_BIGRAMS.get((merged[-1], token))) is not None:
            merged[-1] = phrase
        else:
            merged.append(token)
    return merged


def question_form(text: str, cut: Callable[[str], Sequence[str]]) -> str:
    """A plain query (`plain_question`) with its question words written one way per kind.

    '顾长庚的孪生哥哥是何人' is searched as '顾长庚的孪生哥哥是谁', '沈青崖是在什么地方筑基的' as
    '沈青崖是在哪里筑基的', and '谁是月魇' as '月魇是谁' (only "<who|what> 是 <rest>" with no other
    copula: the inversion never changes that question). Whole words only (`cut` is a precise
    jieba cut that keeps lexicon names whole), so a name or a word that merely contains a
    question word's characters stays as it is.
    """
    words = merge_question_phrases(list(cut(text)))
    mapped = [QUESTION_WORDS.get(w, w) for w in words]
    if len(mapped) > 2 and words[0] in _INVERTIBLE and mapped[1] == COPULA and COPULA not in mapped[2:]:
        mapped = [*mapped[2:], COPULA, mapped[0]]
    return "".join(mapped).strip()  # an inverted '谁是 milvus' must not start with its space
