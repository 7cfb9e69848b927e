"""The domain lexicon as query understanding sees it: names, the entries they name, who mentions whom.

Built once from the entries the lexicon files hold (titles, aliases, texts), all in the folded
form (`retrieval.text.fold`) that queries arrive in. Two things are precomputed here so a query
costs only lookups: how often each name is mentioned across the entries (how likely a writer
means it), and, per entry, which other entries its text names and where.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from retrieval.text import fold

MIN_NAME_CHARS = 2
"""Shorter names (one character) are everywhere in ordinary text; the tokenizer ignores them too."""


@dataclass(frozen=True, slots=True)
class LexiconEntry:
    """One knowledge-base entry as the lexicon knows it: its title, aliases and text as written."""

    title: str
    aliases: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True, slots=True)
class Mention:
    """Entry `title` is named in another entry's text at [start, end) of its folded text."""

    title: str
    start: int
    end: int


@dataclass
class Lexicon:
    """Folded names -> the titles they name, how often each is mentioned, and who names whom."""

    titles_of: dict[str, frozenset[str]] = field(default_factory=dict)
    """Folded name (title or alias) -> the titles (as written) of the entries it names."""
    mentions: dict[str, int] = field(default_factory=dict)
    """Folded name -> occurrences across all entries' titles, aliases and texts."""
    named_in: dict[str, tuple[Mention, ...]] = field(default_factory=dict)
    """Title -> the other entries its text names, in text order (longest name at each place)."""
    texts: dict[str, str] = field(default_factory=dict)
    """Title -> its entry's folded text (what `named_in` offsets point into)."""
    longest: int = 0

    @classmethod
    def build(cls, entries: Iterable[LexiconEntry], names: Iterable[str] = ()) -> Lexicon:
        """The lexicon of `entries` plus bare `names` (from word lists: no entry behind them)."""
        entries = list(entries)
        titles_of: dict[str, set[str]] = {}
        for entry in entries:
            for name in (entry.title, *entry.aliases):
                for part in fold(name).split():  # as the tokenizer's lexicon: no spaces in a word
                    if len(part) >= MIN_NAME_CHARS:
                        titles_of.setdefault(part, set()).add(entry.title)
        for name in names:
            for part in fold(name).split():
                if len(part) >= MIN_NAME_CHARS:
                    titles_of.setdefault(part, set())
        lexicon = cls({k: frozenset(v) for k, v in titles_of.items()})
        lexicon.longest = max((len(n) for n in titles_of), default=0)
        counts = dict.fromkeys(titles_of, 0)
        for entry in entries:
            folded = fold(entry.text)
            lexicon.texts[entry.title] = folded
            found = lexicon.occurrences(folded)
            for name, _, _ in found:
                counts[name] += 1
            for name in {fold(n) for n in (entry.title, *entry.aliases)} & counts.keys():
                counts[name] += 1
            lexicon.named_in[entry.title] = tuple(
                Mention(title, start, end)
                for name, start, end in lexicon.longest_first(found)
                for title in sorted(lexicon.titles_of[name])
                if title != entry.title
            )
        lexicon.mentions = counts
        return lexicon

    def occurrences(self, text: str) -> list[tuple[str, int, int]]:
        """Every (name, start, end) of a lexicon name in folded `text`, overlapping ones included."""
        found = []
        n = len(text)
        for start in range(n):
            for length in range(MIN_NAME_CHARS, min(self.longest, n - start) + 1):
                piece = text[start : start + length]
                if piece in self.titles_of:
                    found.append((piece, start, start + length))
        return found

    @staticmethod
    def longest_first(found: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        """Non-overlapping occurrences, a longer name winning where two overlap, in text order."""
        kept: list[tuple[str, int, int]] = []
        for name, start, end in sorted(found, key=lambda f: (f[1] - f[2], f[1])):
            if all(end <= s or start >= e for _, s, e in kept):
                kept.append((name, start, end))
        return sorted(kept, key=lambda f: f[1])

    def entities(self, text: str) -> list[tuple[str, int, int]]:
        """The names folded `text` mentions (longest at each place), in text order."""
        return self.longest_first(self.occurrences(text))

    def prior(self, name: str) -> int:
        """How often `name` is mentioned (at least 1 for a lexicon name, 0 otherwise)."""
        return self.mentions.get(name, 0) + (1 if name in self.titles_of else 0)
