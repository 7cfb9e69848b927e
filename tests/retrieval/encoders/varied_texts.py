"""Deterministic varied texts for tokenizer and embedding parity: Chinese, English and mixed.

Chinese comes from the fixture knowledge base (real prose); the rest is drawn from fixed pools:
ASCII and CJK punctuation, digits, full-width forms, emoji, whitespace runs (spaces, tabs,
newlines, U+3000, NBSP) and rare CJK characters that the vocabulary does not cover.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

KB = Path(__file__).resolve().parents[3] / "fixtures" / "kb.jsonl"

ENGLISH_WORDS = (
    "the sword sect master disciple mountain river village night ancient secret battle",
    "library vector search index query passage retrieval embedding model latency CPU",
    "quantisation ONNX runtime Milvus BM25 jieba tokenizer hybrid ranking fusion",
    "what who where when why how does is are was were can could should",
)
WORDS = [w for line in ENGLISH_WORDS for w in line.split()]
ASCII_PUNCT = list(",.;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`")
CJK_PUNCT = list("，。！？、；：“”‘’（）【】《》〈〉「」『』—…·～")
FULL_WIDTH = [chr(c) for c in range(0xFF01, 0xFF5F)]  # ！ to ～, incl. Ａ-Ｚ, ０-９
# Single emoji, then sequences: variation selector, skin tone, ZWJ family, flag.
EMOJI = [*"😀😂🤣❤👍🎉🔥✨🙏😭🥺🤔💯🚀🌸🍜🐼🀄⭐☀", "❤\ufe0f", "👍🏽", "👨\u200d👩\u200d👧", "🇨🇳"]
WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\u3000", "\u00a0", " \t "]
RARE_CJK = list("龘靐齉爩麤鱻䨻㸚䲜𠀀𪚥")  # mostly outside the vocabulary: <unk>


def _chinese_passages() -> list[str]:
    texts: list[str] = []
    with KB.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            texts.append(str(record["text"]))
    return texts


def _english(rng: random.Random, words: int) -> str:
    out = " ".join(rng.choice(WORDS) for _ in range(words))
    return out[0].upper() + out[1:] + rng.choice([".", "?", "!", ""])


def _noise(rng: random.Random) -> str:
    pool = rng.choice([ASCII_PUNCT, CJK_PUNCT, FULL_WIDTH, EMOJI, WHITESPACE, RARE_CJK, list("0123456789")])
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 4)))


def varied_texts(n: int, seed: int = 0, *, max_chars: int = 300) -> list[str]:
    """``n`` texts cycling through six kinds; the same ``seed`` gives the same texts."""
    rng = random.Random(seed)
    chinese = _chinese_passages()
    texts: list[str] = []
    for i in range(n):
        source = rng.choice(chinese)
        start = rng.randrange(max(len(source) - 20, 1))
        zh = source[start : start + rng.randint(6, 120)]
        kind = i % 6
        if kind == 0:  # a Chinese query-like snippet
            text = zh[: rng.randint(4, 24)] + rng.choice(["？", "?", "", "。"])
        elif kind == 1:  # a Chinese passage
            text = zh
        elif kind == 2:  # English
            text = _english(rng, rng.randint(2, 30))
        elif kind == 3:  # mixed scripts, digits
            text = f"{zh[:30]} {_english(rng, rng.randint(1, 6))} {rng.randint(0, 10**6)}{zh[30:60]}"
        elif kind == 4:  # noisy: Chinese with punctuation, full-width, emoji, whitespace runs
            parts = [zh[j : j + 8] for j in range(0, len(zh), 8)]
            text = "".join(p + _noise(rng) for p in parts)
        else:  # leading/trailing whitespace and runs of everything
            text = rng.choice(WHITESPACE) + _noise(rng) + zh[:40] + _noise(rng) + rng.choice(WHITESPACE)
        texts.append(text[:max_chars])
    return texts
