"""Text normalisation shared by indexing, querying and the cache, so all three fold text alike.

Also where jieba is imported, once, for every module that segments text.
"""

from __future__ import annotations

import logging
import unicodedata
import warnings
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

__all__ = ["ANALYSIS", "fold", "jieba", "normalise", "to_simplified"]

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
