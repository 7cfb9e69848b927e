"""Names typed with a homophone character (沈青涯 for 沈青崖) read as the lexicon name they most likely mean.

A stretch of the query is read as a lexicon name when it has the name's length, sounds the same
(toneless pinyin, any reading of a heteronym), differs from it in one character (two for names of
four or more) and is not itself part of a lexicon name the query already spells exactly. Among
several such names the most mentioned one wins, but only by a clear margin (`margin` times the
next one's mentions); otherwise the stretch is left as typed. Names that exist are never changed,
so 沈青崖 and 沈青岩 stay what the writer typed.

Only homophones: no maintained source of look-alike (形近) characters was found to build on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

from pypinyin import Style, pinyin

from retrieval.understanding.lexicon import Lexicon

MAX_READINGS = 32
"""Reading combinations indexed per name (heteronyms multiply them; names are short)."""


@lru_cache(maxsize=65_536)
def readings(char: str) -> tuple[str, ...]:
    """Every toneless reading of one character (itself when it has none, e.g. a digit or letter)."""
    found = pinyin(char, style=Style.NORMAL, heteronym=True, errors=lambda c: c)[0]
    return tuple(dict.fromkeys(found)) or (char,)


def sound(text: str) -> tuple[str, ...]:
    """The toneless pinyin of `text` by each character's first (most common) reading."""
    return tuple(readings(c)[0] for c in text)


@dataclass(frozen=True, slots=True)
class Correction:
    """A query as searched, and the stretches of it read as other names (typed -> name)."""

    text: str
    corrected: dict[str, str]


@dataclass(frozen=True)
class CorrectionConfig:
    """How sure a correction must be."""

    min_chars: int = 3
    """Shorter stretches sound like too many ordinary words to be read as names."""
    margin: float = 2.0
    """The chosen name needs this many times the mentions of the next candidate."""


class NameCorrector:
    """Reads misspelt names in folded queries against one lexicon (indexed once, by sound)."""

    def __init__(self, lexicon: Lexicon, config: CorrectionConfig | None = None):
        self.lexicon = lexicon
        self.config = config or CorrectionConfig()
        self._by_sound: dict[tuple[str, ...], list[str]] = {}
        for name in lexicon.titles_of:
            if len(name) < self.config.min_chars:
                continue
            combos = itertools.islice(itertools.product(*(readings(c) for c in name)), MAX_READINGS)
            for key in dict.fromkeys(combos):
                self._by_sound.setdefault(key, []).append(name)

    @staticmethod
    def allowed_differences(length: int) -> int:
        """Characters a typed stretch may differ in: one in a short name, two from four on."""
        return 1 if length <= 3 else 2

    def correct(self, text: str) -> Correction:
        """`text` (folded) with every confidently misspelt name replaced by the name it means."""
        lexicon, config = self.lexicon, self.config
        if not self._by_sound or len(text) < config.min_chars:
            return Correction(text, {})
        protected = [False] * len(text)
        for _, start, end in lexicon.occurrences(text):
            for i in range(start, end):
                protected[i] = True
        proposals: list[tuple[int, int, int, str]] = []  # (start, end, mentions, name)
        longest = min(lexicon.longest, len(text))
        for length in range(config.min_chars, longest + 1):
            for start in range(len(text) - length + 1):
                end = start + length
                if any(protected[start:end]):
                    continue
                typed = text[start:end]
                names = self._by_sound.get(sound(typed))
                if not names:
                    continue
                limit = self.allowed_differences(length)
                fits = [n for n in names if 0 < sum(a != b for a, b in zip(n, typed, strict=True)) <= limit]
                if chosen := self._choose(fits):
                    proposals.append((start, end, lexicon.prior(chosen), chosen))
        if not proposals:
            return Correction(text, {})
        # Longer stretches first (a whole name over a part of it), then the more mentioned name.
        proposals.sort(key=lambda p: (p[0] - p[1], -p[2], p[0]))
        kept: list[tuple[int, int, int, str]] = []
        for proposal in proposals:
            if all(proposal[1] <= s or proposal[0] >= e for s, e, _, _ in kept):
                kept.append(proposal)
        kept.sort()
        out, corrected, cursor = [], {}, 0
        for start, end, _, name in kept:
            out.append(text[cursor:start])
            out.append(name)
            corrected[text[start:end]] = name
            cursor = end
        out.append(text[cursor:])
        return Correction("".join(out), corrected)

    def _choose(self, names: list[str]) -> str | None:
        if not names:
            return None
        ranked = sorted(names, key=lambda n: (-self.lexicon.prior(n), n))
        if len(ranked) > 1 and self.lexicon.prior(ranked[0]) < self.config.margin * self.lexicon.prior(
            ranked[1]
        ):
            return None  # two names about as likely: a guess would be as often wrong as right
        return ranked[0]
