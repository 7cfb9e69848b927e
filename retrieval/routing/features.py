"""Text features of a query for the intent head: KB entity kinds and hashed cue n-grams.

The embedding of a short query is dominated by the invented name in it ("玄冥宫" and "玄冥宫的宫主是
谁" sit close together), and a general encoder cannot know that 玄冥宫 is a faction of this world.
Two cheap signals computed from the query text (no encoder pass, a few microseconds):

* **entity kinds**: the KB titles and aliases found in the query (greedy longest match, left to
  right, so 沈青崖 wins over 青崖), counted per KB kind, plus the share of the query's characters
  they cover (a bare name covers all of it, which is what the `name` intent means);
* **cue n-grams**: character uni- and bi-grams of the query (start and end marked) with each name
  replaced by one placeholder character per kind, hashed (CRC-32, stable across processes, unlike
  `hash`) into a fixed number of buckets. The placeholder keeps the frame of the question ("<faction>的掌门"
  asks for a person) while the name itself carries no weight, so the head learns the wording
  rather than memorising names.

The name -> kind table is saved with the trained head, so training and serving compute exactly
the same features whatever lexicon the server's tokenizer loaded. Without a table (a labelled
file with no KB), only the cue n-grams remain.
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

# Private-use code points stand for "a name of kind k" inside the n-grams; they never occur in text.
_PLACEHOLDER_BASE = 0xE000
_START = chr(0xE0FE)
_END = chr(0xE0FF)
_MIN_NAME_CHARS = 2
"""One-character aliases would match inside ordinary words."""


def normalise_query(text: str) -> str:
    """NFKC and lower case, so full-width forms and Latin case do not split n-grams."""
    return unicodedata.normalize("NFKC", text).lower().strip()


@dataclass(frozen=True)
class EntitySpan:
    """One KB name found in a query."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class QueryFeatures:
    """Maps query texts to a fixed-width float32 feature block (see the module docstring)."""

    names: Mapping[str, str] = field(default_factory=dict)
    """Normalised KB name -> kind; a name of two kinds keeps the first kind given."""
    buckets: int = 2048
    """Hashed n-gram buckets (0: no n-gram features)."""
    max_n: int = 2
    """Longest character n-gram hashed (1: characters only)."""
    boundaries: bool = True
    """Mark the start and end of the query in the n-grams, so "谁$" (a question ending in 谁) and
    the head noun at the end of a description differ from the same characters mid-query."""
    kinds: tuple[str, ...] = field(init=False)
    _longest: int = field(init=False)

    def __post_init__(self) -> None:
        if self.buckets < 0:
            raise ValueError("buckets must be >= 0")
        if self.max_n < 1:
            raise ValueError("max_n must be >= 1")
        kinds = tuple(sorted(set(self.names.values())))
        if not kinds and not self.buckets:
            raise ValueError("query features need a name table, n-gram buckets, or both")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "_longest", max((len(n) for n in self.names), default=0))

    @classmethod
    def from_names(
        cls,
        names: Sequence[str],
        kinds: Sequence[str],
        *,
        buckets: int = 2048,
        max_n: int = 2,
        boundaries: bool = True,
    ) -> QueryFeatures:
        """Build the table from KB titles and aliases with their kinds (`dataset.kb_names`)."""
        if len(names) != len(kinds):
            raise ValueError("one kind per name")
        table: dict[str, str] = {}
        for name, kind in zip(names, kinds, strict=True):
            key = normalise_query(name)
            if len(key) >= _MIN_NAME_CHARS:
                table.setdefault(key, kind)
        return cls(table, buckets, max_n, boundaries)

    @property
    def dim(self) -> int:
        """Width of the feature block: one count per kind, the name coverage, the n-gram buckets."""
        return (len(self.kinds) + 1 if self.kinds else 0) + self.buckets

    def entities(self, text: str) -> list[EntitySpan]:
        """KB names in the (normalised) query, greedy longest match from the left, no overlaps."""
        spans: list[EntitySpan] = []
        if not self._longest:
            return spans
        i, n = 0, len(text)
        while i < n:
            for length in range(min(self._longest, n - i), _MIN_NAME_CHARS - 1, -1):
                kind = self.names.get(text[i : i + length])
                if kind is not None:
                    spans.append(EntitySpan(i, i + length, kind))
                    i += length
                    break
            else:
                i += 1
        return spans

    def _bucket(self, gram: str) -> int:
        return zlib.crc32(gram.encode("utf-8")) % self.buckets

    def transform_one(self, text: str, out: npt.NDArray[np.float32]) -> None:
        """Write the features of one query into `out` (a zeroed row of width `dim`)."""
        query = normalise_query(text)
        spans = self.entities(query)
        offset = 0
        if self.kinds:
            covered = 0
            for span in spans:
                out[self.kinds.index(span.kind)] += 1.0
                covered += span.end - span.start
            out[len(self.kinds)] = covered / len(query) if query else 0.0
            offset = len(self.kinds) + 1
        if not self.buckets:
            return
        # The query with every name collapsed into its kind's placeholder, whitespace dropped.
        pieces: list[str] = []
        cursor = 0
        for span in spans:
            pieces.append(query[cursor : span.start])
            pieces.append(chr(_PLACEHOLDER_BASE + self.kinds.index(span.kind)))
            cursor = span.end
        pieces.append(query[cursor:])
        chars = "".join(c for c in "".join(pieces) if not c.isspace())
        grams = set(chars)
        if self.boundaries:
            chars = f"{_START}{chars}{_END}"
        for n in range(2, self.max_n + 1):
            grams.update(chars[i : i + n] for i in range(len(chars) - n + 1))
        for gram in grams:
            out[offset + self._bucket(gram)] = 1.0

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(len(texts), dim) features; deterministic (no randomness, stable hashing)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in zip(out, texts, strict=True):
            self.transform_one(text, row)
        return out

    def to_json(self) -> dict[str, Any]:
        """What `from_json` needs (saved in the head's meta.json)."""
        return {
            "buckets": self.buckets,
            "max_n": self.max_n,
            "boundaries": self.boundaries,
            "names": dict(sorted(self.names.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueryFeatures:
        """Inverse of `to_json`; raises ValueError on a malformed record."""
        try:
            buckets = int(data["buckets"])
            max_n = int(data["max_n"])
            boundaries = bool(data["boundaries"])
            names = {str(k): str(v) for k, v in dict(data["names"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed query-feature record ({exc})") from exc
        return cls(names, buckets, max_n, boundaries)
