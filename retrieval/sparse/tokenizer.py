"""jieba tokenisation with the domain lexicon, identical at index and query time."""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from retrieval.text import ANALYSIS, fold, jieba

logger = logging.getLogger(__name__)

# Function words and question particles that carry no retrieval signal in either corpus or query.
# Kept short on purpose: BM25's IDF already discounts common words; these only shrink vectors.
STOPWORDS = frozenset(
    [
        "的",
        "了",
        "着",
        "过",
        "是",
        "在",
        "和",
        "与",
        "及",
        "或",
        "而",
        "也",
        "都",
        "就",
        "又",
        "还",
        "被",
        "把",
        "将",
        "对",
        "从",
        "向",
        "于",
        "以",
        "之",
        "其",
        "这",
        "那",
        "么",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "哪",
        "谁",
        "什么",
        "怎么",
        "怎样",
        "如何",
        "为何",
        "为什么",
        "哪里",
        "哪个",
        "哪些",
        "多少",
        "是否",
        "有没有",
        "一个",
        "一位",
        "一种",
        "这个",
        "那个",
    ]
)

# Weight given to lexicon words in jieba's dictionary: high enough that jieba keeps a name whole
# instead of splitting it into more frequent pieces.
_LEXICON_FREQ = 200_000


def _is_token(word: str) -> bool:
    stripped = word.strip()
    if not stripped or stripped in STOPWORDS:
        return False
    # Drop pure punctuation/symbol tokens; keep anything with a letter or digit (incl. CJK).
    return any(unicodedata.category(ch)[0] in {"L", "N"} for ch in stripped)


class JiebaTokenizer:
    """A private jieba instance (the global one is shared and not safe to mutate concurrently)."""

    def __init__(self, lexicon: Iterable[str] = (), mode: str = "search", cache_dir: Path | None = None):
        if mode not in {"search", "precise"}:
            raise ValueError(f"jieba mode must be 'search' or 'precise', not {mode!r}")
        self.mode = mode
        self._jieba = jieba.Tokenizer()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self._jieba.tmp_dir = str(cache_dir)
        self._lock = threading.Lock()
        self._lexicon: set[str] = set()
        self._initialised = False
        self.add_words(lexicon)

    analysis = ANALYSIS
    """How text is folded before it is cut (`retrieval.text.fold`): part of what an index records."""

    @property
    def lexicon(self) -> frozenset[str]:
        """The domain words this tokenizer keeps whole (folded: NFKC, lower case, simplified)."""
        return frozenset(self._lexicon)

    def _ensure_initialised(self) -> None:
        if not self._initialised:
            with self._lock:
                if not self._initialised:
                    self._jieba.initialize()
                    self._initialised = True

    def add_words(self, words: Iterable[str]) -> None:
        """Add lexicon entries (names, aliases); applies to every later tokenisation."""
        self._ensure_initialised()
        with self._lock:
            for word in words:
                norm = fold(word).strip()
                if len(norm) >= 2 and norm not in self._lexicon:
                    self._lexicon.add(norm)
                    self._jieba.add_word(norm, freq=_LEXICON_FREQ)

    def tokenize(self, text: str) -> list[str]:
        """Tokens of `text` after folding (`retrieval.text.fold`), stopword and punctuation removal."""
        self._ensure_initialised()
        norm = fold(text)
        words: Iterable[str]
        if self.mode == "search":
            words = self._jieba.cut_for_search(norm, HMM=True)
        else:
            words = self._jieba.cut(norm, HMM=True)
        return [w.strip() for w in words if _is_token(w)]

    def words(self, text: str) -> list[str]:
        """Every word of `text` in order, function words and punctuation included (precise cut, no
        HMM, so the same text always splits the same way and lexicon names stay whole)."""
        self._ensure_initialised()
        return list(self._jieba.cut(fold(text), HMM=False))

    def entities(self, text: str) -> frozenset[str]:
        """Lexicon entries that occur in `text` as whole tokens (precise cut, so names stay whole)."""
        self._ensure_initialised()
        return frozenset(w for w in self._jieba.cut(fold(text), HMM=False) if w in self._lexicon)
