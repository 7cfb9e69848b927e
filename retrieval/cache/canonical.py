"""The canonical-form tier's key: what a query asks, with its surface and function words folded away.

'沈青崖的师父是谁？', '谁是沈青崖的师父', '請問沈青崖的師父是誰呢' and '沈青崖师父是谁啊' ask one
question; the exact tier sees four. The canonical form is the sequence of the query's
meaning-bearing tokens: jieba (with the lexicon, so names stay whole) over the simplified,
width-folded text, with particles, polite wrappers and the copula dropped, question words mapped
to one word per kind (谁/何人/哪位 -> 谁), and numerals written as digits (第十二章 -> 第12章).

Token order is kept, on purpose. Dropping only function words leaves who-does-what-to-whom
intact: '沈青崖打败了顾长安' and '顾长安打败了沈青崖' keep their names on opposite sides of the
verb, and the role markers 被/把/让 are not dropped, so '甲把乙打败了' and '甲被乙打败了' differ
too. The one reordering folded is copula inversion with a question word on one side ('谁是X' ->
'X是谁'), which never changes the question; '沈青崖是谁的师父' (the question word inside a side)
keeps its own form. A bag of tokens would merge more paraphrases and also merge those opposites.

The key also carries the guard sets (entities, negations, numbers, roles; see `guards`), so a
canonical hit passes every guard a semantic hit must pass, whatever the token list says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence, Set

from retrieval.cache.guards import NON_NUMERIC_COMPOUNDS, chinese_numeral_value, guard_signature
from retrieval.text import (
    COPULA,
    QUESTION_WORDS,
    QUESTION_WRAPPERS,
    merge_question_phrases,
    strip_wrappers,
    to_simplified,
)

WordCutter = Callable[[str], Sequence[str]]
"""Splits simplified, normalised text into words, keeping lexicon entries whole (jieba, precise)."""

PARTICLES = frozenset(
    [
        "的",
        "地",
        "得",
        "了",
        "着",
        "过",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "么",
        "嘛",
        "哦",
        "呗",
        "啦",
        "哇",
        "哈",
        "嗯",
    ]
)
"""Structural and modal particles: they colour a question without changing what it asks."""


_SEPARATOR = "\x1f"
_CN_NUMERAL = re.compile("[零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟]+")
_NON_NUMERIC = frozenset(NON_NUMERIC_COMPOUNDS)


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _digits(token: str, entities: Set[str]) -> str:
    """Chinese numerals in a token as digits ('第十二章' -> '第12章'); names and idioms stay as written."""
    if token in entities or token in _NON_NUMERIC:
        return token
    return _CN_NUMERAL.sub(lambda m: str(chinese_numeral_value(m.group())), token)


def _merge_numbers(tokens: list[str], entities: Set[str]) -> list[str]:
    """Digits glued to their neighbours: jieba cuts '第12章' in three and '第十二章' in one."""
    merged: list[str] = []
    for token in tokens:
        if (
            merged
            and token not in entities
            and merged[-1] not in entities
            and (merged[-1][-1].isdigit() or token[0].isdigit() or merged[-1] == "第")
        ):
            merged[-1] += token
        else:
            merged.append(token)
    return merged


def canonical_tokens(text: str, entities: Set[str], cut: WordCutter) -> tuple[str, ...]:
    """The meaning-bearing tokens of a normalised query, in order (see the module docstring)."""
    simplified = strip_wrappers(to_simplified(text).strip())
    words = merge_question_phrases([w.strip() for w in cut(simplified) if _is_word(w)])
    tokens = [QUESTION_WORDS.get(w, w) for w in words if w not in PARTICLES and w not in QUESTION_WRAPPERS]
    questions = set(QUESTION_WORDS.values())
    # '谁是X' asks what 'X是谁' asks: put the question word after the copula, once, when the
    # query is exactly "<question word> 是 <rest>" and the rest has no copula of its own.
    if len(tokens) > 2 and tokens[0] in questions and tokens[1] == COPULA and COPULA not in tokens[2:]:
        tokens = [*tokens[2:], COPULA, tokens[0]]
    # The copula carries no content once the question word has its place: 'X是被谁杀的' = 'X被谁杀的'.
    digits = [_digits(t, entities) for t in tokens if t != COPULA]
    return tuple(_merge_numbers(digits, entities))


def canonical_form(text: str, entities: Set[str], cut: WordCutter) -> str:
    """The canonical-tier key text of a normalised query: its tokens plus its guard sets.

    '' when nothing meaning-bearing is left (the tier is then skipped for the query).
    """
    tokens = canonical_tokens(text, entities, cut)
    if not tokens:
        return ""
    sig = guard_signature(text, entities)
    parts = [
        " ".join(tokens),
        ",".join(sorted(sig.entities)),
        ",".join(sorted(sig.negations)),
        ",".join(sorted(sig.numbers)),
        ",".join(sig.roles),
    ]
    return _SEPARATOR.join(parts)
