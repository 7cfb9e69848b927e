"""Guards that refuse a semantic hit between queries whose vectors agree but whose questions differ.

Sentence embeddings place '林动的师父是谁' and '林炎的师父是谁', or '沈青崖会用剑吗' and
'沈青崖不会用剑吗', very close together; serving one's answer for the other is the worst thing a
cache can do. Every guard is an equality test on a set extracted from the query, and all of them
err towards refusing: a refusal costs one search, a wrong hit costs the user's trust.

- entities: the lexicon entities (names, places, techniques) the caller found in each query.
- negation: which words of `NEGATION_WORDS` occur, compared per word (so '不' vs '不是' differs)
  and by count (so '不不是' differs from '不是').
- numbers: digit runs and Chinese numerals, compared by value ('第3章' equals '第三章').
- roles: who does what to whom. The order in which two or more entities are mentioned
  ('沈青崖打败了顾长安' / '顾长安打败了沈青崖' share every word and nearly every vector
  component) and the voice markers present (被 passive, 把 disposal, 让/使/令 causative:
  '沈伯庸是被谁杀的' asks the opposite of '沈伯庸杀了谁').

Entity names are masked before the other two scans, so a name such as '无双城' neither counts as
a negation nor as a number.
"""

from __future__ import annotations

import re
from collections.abc import Set
from dataclasses import dataclass

from retrieval.cache.protocol import GuardReason
from retrieval.text import to_simplified

NEGATION_WORDS: tuple[str, ...] = (
    # plain negation
    "不",
    "没",
    "没有",
    "无",
    "非",
    "未",
    "别",
    "莫",
    "勿",
    "甭",
    # compound negation, listed as well so '不' vs '不是' still differs word by word
    "不是",
    "并非",
    "并不",
    "从不",
    "从未",
    "毫无",
    "绝不",
    "决不",
    # exclusion: 'who besides X' asks about everyone but X
    "除了",
    "除非",
    "而非",
    "而不是",
    "以外",
    "之外",
    # contrast: the clause after it overrides the one before
    "但",
    "但是",
    "却",
    "反而",
    "然而",
    "不过",
    "可是",
)
"""Chinese negation, exclusion and contrast words; substring matches on the normalised query."""

ENGLISH_NEGATION_WORDS: frozenset[str] = frozenset(
    {"not", "no", "never", "without", "except", "but", "non", "none", "nor"}
)
"""Whole-word English negations (queries mix in Latin names and terms)."""

NON_NEGATING_COMPOUNDS: tuple[str, ...] = (
    "非常",  # very
    "无论",  # no matter
    "不论",
    "不管",
    "不断",  # continuously
    "不仅",  # not only (adds, does not negate)
    "不久",  # soon
    "差不多",  # about
    "不得不",  # have to (double negation)
    "无数",  # countless
)
"""Words that contain a negation character but do not negate; masked before the negation scan."""

NON_NUMERIC_COMPOUNDS: tuple[str, ...] = (
    "一直",
    "一起",
    "一样",
    "一定",
    "一切",
    "一般",
    "一下",
    "一些",
    "一旦",
    "一同",
    "一个",
    "一种",
    "一位",
    "另一",
    "万一",
    "千万",
    "唯一",
    "哪一",  # '哪一年' asks which year: no quantity in it
)
"""Words written with numerals that carry no quantity; masked before the number scan, except after
第 ('第一个' is an ordinal). '有一个师父吗' and '有师父吗' ask the same; '一个' vs '两个' still differ."""

VOICE_MARKERS: tuple[str, ...] = ("被", "把", "让", "使", "令", "遭")
"""Passive, disposal and causative markers: they decide which entity acts and which is acted on."""

NON_VOICE_COMPOUNDS: tuple[str, ...] = (
    "使用",
    "即使",
    "假使",
    "使者",
    "大使",
    "天使",
    "令牌",
    "命令",
    "号令",
    "口令",
    "法令",
    "县令",
    "让位",
    "被子",
    "把握",
    "把手",
    "把柄",
    "遭遇",
)
"""Words written with a voice marker that mark no voice; masked before the voice scan."""

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "壹": 1,
    "二": 2,
    "两": 2,
    "贰": 2,
    "三": 3,
    "叁": 3,
    "四": 4,
    "肆": 4,
    "五": 5,
    "伍": 5,
    "六": 6,
    "陆": 6,
    "七": 7,
    "柒": 7,
    "八": 8,
    "捌": 8,
    "九": 9,
    "玖": 9,
}
_CN_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CN_LARGE_UNITS = {"万": 10_000, "亿": 100_000_000}
_CN_NUMERAL_RUN = re.compile("[" + "".join([*_CN_DIGITS, *_CN_SMALL_UNITS, *_CN_LARGE_UNITS]) + "]+")
_DIGIT_RUN = re.compile(r"\d+(?:\.\d+)?")
_LATIN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_MASK = "\u3000"  # ideographic space: never part of a word, a negation or a number
_NON_NUMERIC = re.compile(
    "(?<!第)(?:" + "|".join(sorted(map(re.escape, NON_NUMERIC_COMPOUNDS), key=len, reverse=True)) + ")"
)


@dataclass(frozen=True, slots=True)
class GuardSignature:
    """The sets the guards compare; two queries may share a cached answer only if all are equal."""

    entities: frozenset[str]
    negations: frozenset[str]
    numbers: frozenset[str]
    roles: tuple[str, ...] = ()
    """Entity mention order when two or more are named, then the voice markers present, sorted."""


def chinese_numeral_value(run: str) -> int:
    """Value of a run of Chinese numerals: '二十三' -> 23, '一百零五' -> 105, '二〇二三' -> 2023."""
    if not any(ch in _CN_SMALL_UNITS or ch in _CN_LARGE_UNITS for ch in run):
        # Digit-by-digit form (years, room numbers).
        return int("".join(str(_CN_DIGITS[ch]) for ch in run)) if run else 0
    total = section = chunk = digit = 0
    for ch in run:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch in _CN_SMALL_UNITS:
            chunk += (digit or 1) * _CN_SMALL_UNITS[ch]  # '十二': a bare unit means one of it
            digit = 0
        elif ch == "万":
            section += ((chunk + digit) or 1) * _CN_LARGE_UNITS[ch]
            chunk = digit = 0
        else:  # 亿
            total += ((section + chunk + digit) or 1) * _CN_LARGE_UNITS[ch]
            section = chunk = digit = 0
    return total + section + chunk + digit


def _mask(text: str, words: Set[str] | tuple[str, ...]) -> str:
    # Longest first, so a name containing a shorter name is masked whole.
    for word in sorted(words, key=len, reverse=True):
        if word:
            text = text.replace(word, _MASK)
    return text


def negations_in(text: str) -> frozenset[str]:
    """Which negation/contrast words occur in a normalised, entity-masked query."""
    masked = _mask(text, NON_NEGATING_COMPOUNDS)
    # Counted, so a doubled negation ('不不是', 'not not') differs from a single one.
    found = {
        word if (n := masked.count(word)) == 1 else f"{word}*{n}" for word in NEGATION_WORDS if word in masked
    }
    found.update(w for w in _LATIN_WORD.findall(masked) if w in ENGLISH_NEGATION_WORDS or w.endswith("n't"))
    return frozenset(found)


def numbers_in(text: str) -> frozenset[str]:
    """Numbers in a normalised, entity-masked query, by value (digits and Chinese numerals alike)."""
    masked = _NON_NUMERIC.sub(_MASK, text)
    found: set[str] = set()
    for run in _DIGIT_RUN.findall(masked):
        found.add(str(int(run)) if "." not in run else run.rstrip("0").rstrip("."))
    for run in _CN_NUMERAL_RUN.findall(masked):
        found.add(str(chinese_numeral_value(run)))
    return frozenset(found)


def entity_order(query: str, entities: Set[str]) -> tuple[str, ...]:
    """The entities in the order of their first mention; () with fewer than two (order is moot)."""
    if len(entities) < 2:
        return ()
    # Longest first, masking each found name, so '沈青崖' inside '沈青崖剑' is not found twice.
    text, first = query, {}
    for name in sorted(entities, key=len, reverse=True):
        at = text.find(name)
        if at >= 0:
            first[name] = at
            text = text.replace(name, _MASK * len(name))
    return tuple(sorted(first, key=lambda name: (first[name], name)))


def voice_markers_in(text: str) -> tuple[str, ...]:
    """Voice markers of a normalised, entity-masked query, sorted."""
    masked = _mask(text, NON_VOICE_COMPOUNDS)
    return tuple(sorted(marker for marker in VOICE_MARKERS if marker in masked))


def guard_signature(query: str, entities: Set[str]) -> GuardSignature:
    """The guard sets of a normalised query (see `normalise_query`) and its lexicon entities.

    Read from the simplified form, so a traditional '沒有' counts as the negation '没有' does.
    """
    query = to_simplified(query)
    ents = frozenset(entities)
    rest = _mask(query, ents)
    roles = (*entity_order(query, ents), *voice_markers_in(rest))
    return GuardSignature(ents, negations_in(rest), numbers_in(rest), roles)


def guard_rejection(cached: GuardSignature, incoming: GuardSignature) -> GuardReason | None:
    """The first guard that tells the two queries apart, or None when one may answer the other."""
    if cached.entities != incoming.entities:
        return "entities"
    if cached.negations != incoming.negations:
        return "negation"
    if cached.numbers != incoming.numbers:
        return "numbers"
    if cached.roles != incoming.roles:
        return "roles"
    return None
