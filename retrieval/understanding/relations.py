"""Relation questions: "沈青崖的师父是谁", "X的师父", "X和Y是什么关系".

The answer to such a question is usually another entry that the asked entity's own entry names
(沈青崖's entry says he became 顾长庚's disciple). So both are candidates: the entries asked about,
then the entries their texts name, nearest first to the words the question asks with (师父), as
measured in the asked entry's text.

A question is read as one when an entity name is followed by 的, two entity names are joined by
和/与/跟/同, or the query holds an entity name and a question word (谁, 什么, 哪, ...: "栖岚剑宗是谁
创立的", "冰魄渡那晚是谁救了沈青崖"); the rest of the query is what is asked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from retrieval.understanding.lexicon import Lexicon

JOINERS = frozenset("和与跟同")
QUESTION_CHARS = frozenset("的是谁什么哪个些吗呢了几怎样么为何有叫在")
"""Characters that make a question a question, not what it asks about (skipped as cues)."""
QUESTION_WORDS = ("谁", "什么", "哪", "几", "怎么", "怎样", "为什么", "为何", "如何", "多少")
"""Words that make a query naming an entity a question about what its entry names."""


@dataclass(frozen=True, slots=True)
class EntityQuestion:
    """The entries a relation question asks about, and the entries they name (most related first)."""

    asked: tuple[str, ...]
    named: tuple[str, ...]
    closeness: tuple[float, ...]
    """Per named entry, 1 / (1 + characters between its mention and the nearest cue)."""

    @property
    def titles(self) -> tuple[str, ...]:
        """Every entry title the question makes a candidate, asked ones first."""
        return self.asked + self.named


def _cues(text: str, spans: list[tuple[str, int, int]]) -> list[str]:
    """The asked-about words: characters and pairs of the query outside names and question words."""
    inside = [False] * len(text)
    for _, start, end in spans:
        for i in range(start, end):
            inside[i] = True
    cues: list[str] = []
    run: list[str] = []
    for i, ch in enumerate([*text, " "]):
        if i < len(text) and not inside[i] and ch not in QUESTION_CHARS and ch.isalnum():
            run.append(ch)
            continue
        word = "".join(run)
        run = []
        # Pairs and single characters both: "师父" is often written "为师" or "师尊" in an entry.
        cues.extend(word[j : j + 2] for j in range(len(word) - 1))
        cues.extend(word)
    return list(dict.fromkeys(cues))


def entity_question(lexicon: Lexicon, text: str, *, named_limit: int = 5) -> EntityQuestion | None:
    """The relation question in folded `text`, or None when it is not one."""
    spans = lexicon.entities(text)
    titled = [s for s in spans if lexicon.titles_of[s[0]]]
    if not titled:
        return None
    followed = any(end < len(text) and text[end] == "的" for _, _, end in titled)
    joined = any(
        a[2] < b[1] and set(text[a[2] : b[1]]) <= JOINERS and text[a[2] : b[1]]
        for a, b in itertools.pairwise(titled)
    )
    asks = any(word in text for word in QUESTION_WORDS)
    if not (followed or joined or asks):
        return None
    asked = tuple(dict.fromkeys(t for name, _, _ in titled for t in sorted(lexicon.titles_of[name])))
    cues = _cues(text, spans) + ([name for name, _, _ in titled] if len(titled) > 1 else [])
    best: dict[str, float] = {}
    order: dict[str, int] = {}
    for title in asked:
        body = lexicon.texts.get(title, "")
        places = [i for cue in cues for i in _find_all(body, cue)]
        for mention in lexicon.named_in.get(title, ()):
            if mention.title in asked:
                continue
            gap = min((_gap(mention.start, mention.end, p) for p in places), default=len(body))
            closeness = 1.0 / (1.0 + gap)
            if closeness > best.get(mention.title, -1.0):
                best[mention.title] = closeness
            order.setdefault(mention.title, len(order))
    ranked = sorted(best, key=lambda t: (-best[t], order[t]))[:named_limit]
    return EntityQuestion(asked, tuple(ranked), tuple(best[t] for t in ranked))


def _find_all(text: str, piece: str) -> list[int]:
    found, start = [], text.find(piece)
    while start != -1:
        found.append(start)
        start = text.find(piece, start + 1)
    return found


def _gap(start: int, end: int, place: int) -> int:
    """Characters between a mention [start, end) and a cue starting at `place`."""
    if place >= end:
        return place - end
    return max(0, start - place - 1) if place < start else 0
