"""The cache benchmark's query stream: judged fixture queries and the wordings agents produce of them.

Every item comes from one judged query of `fixtures/queries.jsonl` (its judgements in
`fixtures/qrels/test.tsv`), drawn with a Zipf-like popularity so some recur often. After a query's
first appearance (an *original*), each further draw is one of:

- *repeat*: the same text again.
- *surface*: the same words, another surface: punctuation, full/half width, spaces at word
  boundaries, traditional characters, a modal particle added or a 的 dropped.
- *paraphrase*: reworded by a template, in four families: *wrapper* (请问 / 我想知道 ... / ...呢),
  *reorder* (谁是X的师父 / X的师父是谁, 为什么X / X为什么), *synonym* (X师从何人, 在什么地方,
  叫什么名字 ...) and *extend* (沈青岩 -> 沈青岩是谁 / 介绍一下沈青岩, a quote -> 出自哪一章).
- *near-miss*: another question that looks the same: another entity of the lexicon (one
  character apart when one exists), a negation, another number. Near-misses are unique in the
  stream and never a judged query's wording, so serving one from the cache is always serving
  another question's answer.

A variant whose exact text already occurred counts as a repeat, so every surface variant and
paraphrase is a first sighting of its text. Judged items carry the query id whose judgements
measure the harm of a hit; near-misses carry none.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import opencc

from retrieval.documents import read_jsonl
from retrieval.settings import PROJECT_ROOT
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.text import fold

QUERIES = PROJECT_ROOT / "fixtures" / "queries.jsonl"
QRELS = PROJECT_ROOT / "fixtures" / "qrels" / "test.tsv"
KB = PROJECT_ROOT / "fixtures" / "kb.jsonl"
KINDS = ("original", "repeat", "surface", "paraphrase", "near_entity", "near_negation", "near_number")
_NUMBER = re.compile(r"[0-9]+|[一二三四五六七八九十百千]+")
_END_PUNCT = "？?。！!"


@dataclass(frozen=True)
class StreamItem:
    """One query of the replay, how it was made, and whose judgements apply to it."""

    text: str
    kind: str
    family: str
    """The variant's sub-kind (e.g. 'traditional', 'synonym'); the kind again for the others."""
    qid: str | None
    """The judged query it words (None for near-misses, which ask something else)."""


@dataclass(frozen=True)
class Judged:
    """A fixture query: id, text, style."""

    qid: str
    text: str
    style: str
    kind: str


def read_queries(path: Path = QUERIES) -> list[Judged]:
    """The judged fixture queries."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Judged(r["_id"], r["text"], r["style"], r["kind"]) for r in rows]


def read_judgements(path: Path = QRELS) -> dict[str, dict[str, int]]:
    """query id -> document id -> grade, from a BEIR qrels TSV."""
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            qid, doc, grade = line.split("\t")
            qrels.setdefault(qid, {})[doc] = int(grade)
    return qrels


def lexicon_names(path: Path = KB) -> list[str]:
    """Titles and aliases of the fixtures: the lexicon entities near-misses swap."""
    return sorted(
        {x for d in read_jsonl(path) for x in (d.title, *d.aliases) if len(x) >= 2 and " " not in x}
    )


@lru_cache(maxsize=1)
def _s2t() -> opencc.OpenCC:
    return opencc.OpenCC("s2t")


@lru_cache(maxsize=1)
def _tokenizer() -> JiebaTokenizer:
    return JiebaTokenizer(lexicon_names(), mode="precise")


def _core(text: str) -> str:
    return text.rstrip(_END_PUNCT + " ")


# -- surface variants ---------------------------------------------------------------------------
def _punctuation(text: str, rng: random.Random) -> str:
    core = _core(text)
    options = [core, core + "？", core + "?", core + "。", core.replace("，", " ") + "？", core + "！"]
    return rng.choice([o for o in options if o != text] or [core + "？？"])


def _width(text: str, rng: random.Random) -> str:
    table = {"？": "?", "?": "？", "，": ",", ",": "，", " ": "\u3000"}
    swapped = "".join(
        table.get(ch, chr(ord(ch) + 0xFEE0) if "0" <= ch <= "9" or (ch.isascii() and ch.isalpha()) else ch)
        for ch in text
    )
    return swapped if swapped != text else _core(text) + "？"


def _spaces(text: str, rng: random.Random) -> str:
    words = [w for w in _tokenizer().words(_core(text)) if w.strip()]
    if len(words) < 2:
        return " " + text + " "
    cut = rng.randrange(1, len(words))
    return "".join(words[:cut]) + " " + "".join(words[cut:])


def _traditional(text: str, rng: random.Random) -> str:
    converted: str = _s2t().convert(text)
    return converted


def _particle(text: str, rng: random.Random) -> str:
    core = _core(text)
    if "的" in core and rng.random() < 0.4:
        at = core.index("的")
        if not any(name in core and core.find(name) <= at < core.find(name) + len(name) for name in _names()):
            return core[:at] + core[at + 1 :]
    return core + rng.choice(["呢", "啊", "呀", "呢？", "啊？"])


SURFACE: dict[str, Callable[[str, random.Random], str]] = {
    "punctuation": _punctuation,
    "width": _width,
    "spaces": _spaces,
    "traditional": _traditional,
    "particle": _particle,
}


# -- paraphrases --------------------------------------------------------------------------------
def _wrapper(q: Judged, rng: random.Random) -> str | None:
    core = _core(q.text)
    return rng.choice(
        ["请问" + core, "我想知道" + core, core + "呢？", "麻烦告诉我" + core, "请问一下，" + core]
    )


def _reorder(q: Judged, rng: random.Random) -> str | None:
    if q.style in ("quote", "description"):
        return None
    core = _core(q.text)
    if (m := re.fullmatch(r"(.+)是谁", core)) and "是" not in m.group(1):
        return "谁是" + m.group(1) + "？"
    if (m := re.fullmatch(r"谁(.+)", core)) and "是" not in m.group(1):
        return m.group(1) + "的是谁？"
    if m := re.fullmatch(r"为什么(.+)", core):
        return m.group(1) + "是为什么？"
    if (m := re.fullmatch(r"(.+?)为什么(.+)", core)) and len(m.group(1)) >= 2:
        return "为什么" + m.group(1) + m.group(2) + "？"
    if (m := re.fullmatch(r"(.+)是什么", core)) and "是" not in m.group(1):
        return "什么是" + m.group(1) + "？"
    return None


_SYNONYMS: list[tuple[str, list[str]]] = [
    ("的师父是谁", ["师从何人", "拜谁为师", "的师父是何人"]),
    ("是谁", ["是何人", "是哪位", "是什么人"]),
    ("在哪里", ["在什么地方", "在何处", "在哪儿"]),
    ("在哪个州", ["在什么州", "位于哪个州"]),
    ("哪一年", ["哪年", "什么年份"]),
    ("叫什么名字", ["名叫什么", "叫啥名字"]),
    ("叫什么", ["叫什么名字", "名叫什么"]),
    ("是怎么死的", ["是如何死的", "怎么死的"]),
    ("怎么", ["如何"]),
    ("是什么", ["指的是什么", "是啥"]),
    ("为什么", ["为何", "什么原因"]),
    ("的父亲", ["的爹", "的父亲大人"]),
    ("的母亲", ["的娘", "的生母"]),
    ("多少", ["几多", "多少个"]),
]


def _synonym(q: Judged, rng: random.Random) -> str | None:
    if q.style in ("quote", "description"):
        return None  # a quote reworded is another quote
    core = _core(q.text)
    for phrase, alternatives in _SYNONYMS:
        if phrase in core:
            return core.replace(phrase, rng.choice(alternatives), 1) + "？"
    return None


def _extend(q: Judged, rng: random.Random) -> str | None:
    core = _core(q.text)
    if q.style in ("name", "alias"):
        if core.endswith("是谁"):
            return None
        ask = "是谁" if q.kind == "character" else "是什么"
        return rng.choice([core + ask, "介绍一下" + core, "关于" + core + "的资料"])
    if q.style == "quote":
        return rng.choice([f"“{core}”这句话出自哪一章", f"哪一章里有人说“{core}”"])
    if q.style == "description":
        return rng.choice([core + "是哪个", "有没有" + core])
    return None


PARAPHRASE: dict[str, Callable[[Judged, random.Random], str | None]] = {
    "wrapper": _wrapper,
    "reorder": _reorder,
    "synonym": _synonym,
    "extend": _extend,
}


# -- near-misses --------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return tuple(lexicon_names())


def _names_in(text: str) -> set[str]:
    return {n for n in _names() if n in text}


def _near_entity(text: str, rng: random.Random) -> str | None:
    found = _names_in(text)
    if not found:
        return None
    name = max(found, key=len)
    close = [
        n
        for n in _names()
        if len(n) == len(name) and n != name and sum(a != b for a, b in zip(n, name, strict=True)) == 1
    ]
    other = rng.choice(close or [n for n in _names() if n != name and len(n) == len(name)] or [name])
    return text.replace(name, other, 1) if other != name else None


def _near_negation(text: str, rng: random.Random) -> str | None:
    for word, negated in (("是", "不是"), ("会", "不会"), ("能", "不能"), ("有", "没有"), ("被", "没被")):
        at = text.find(word)
        if at > 0 and text[at - 1] in "不没非未":
            continue  # already negated: '不是' -> '不不是' is noise, not a near-miss
        if at >= 0 and not any(n in text and text.find(n) <= at < text.find(n) + len(n) for n in _names()):
            return text[:at] + negated + text[at + len(word) :]
    return None


def _near_number(text: str, rng: random.Random) -> str | None:
    for m in _NUMBER.finditer(text):
        inside = any(n in text and text.find(n) <= m.start() < text.find(n) + len(n) for n in _names())
        if inside or m.group() in ("一",):
            continue  # '一' is mostly not a quantity ('一直', '一枚' at most one)
        replacement = str(int(m.group()) + 1) if m.group().isdigit() else "七" if m.group() != "七" else "九"
        return text[: m.start()] + replacement + text[m.end() :]
    return None


NEAR_MISS: dict[str, Callable[[str, random.Random], str | None]] = {
    "near_entity": _near_entity,
    "near_negation": _near_negation,
    "near_number": _near_number,
}


def _plain(text: str) -> str:
    """How the benchmark tells wordings apart: normalised, simplified, inner punctuation and spaces gone."""
    # `fold`, not the product's query form: the stream stays the same whatever the server folds.
    return re.sub(r"[\s\W_]+", "", fold(text))


def build_stream(n: int, seed: int) -> list[StreamItem]:
    """`n` queries: originals, repeats, surface variants, paraphrases, near-misses (see module)."""
    rng = random.Random(seed)
    base = read_queries()
    judged_wordings = {_plain(q.text) for q in base}
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(base))]
    rng.shuffle(base)
    stream: list[StreamItem] = []
    texts: set[str] = set()
    plain_seen: set[str] = set()

    def add(text: str, kind: str, family: str, qid: str | None) -> None:
        if text in texts and kind not in ("original", "repeat"):
            kind = family = "repeat"
        texts.add(text)
        plain_seen.add(_plain(text))
        stream.append(StreamItem(text, kind, family, qid))

    seen: set[str] = set()
    while len(stream) < n:
        q = rng.choices(base, weights=weights, k=1)[0]
        if q.qid not in seen:
            seen.add(q.qid)
            add(q.text, "original", "original", q.qid)
            continue
        roll = rng.random()
        if roll < 0.2:
            add(q.text, "repeat", "repeat", q.qid)
        elif roll < 0.45:
            family = rng.choice(list(SURFACE))
            add(SURFACE[family](q.text, rng), "surface", family, q.qid)
        elif roll < 0.75:
            # Wrappers fit every query; the rewordings that need a pattern are drawn first.
            made = {family: PARAPHRASE[family](q, rng) for family in PARAPHRASE}
            reworded = [f for f, text in made.items() if text is not None and f != "wrapper"]
            family = rng.choice(reworded) if reworded and rng.random() < 0.75 else "wrapper"
            add(str(made[family]), "paraphrase", family, q.qid)
        else:
            kinds = list(NEAR_MISS)
            rng.shuffle(kinds)
            for kind in kinds:
                text = NEAR_MISS[kind](q.text, rng)
                # Unique, and never another judged query's wording or an earlier item's.
                if (
                    text is not None
                    and _plain(text) not in judged_wordings
                    and _plain(text) not in plain_seen
                ):
                    add(text, kind, kind, None)
                    break
    return stream[:n]
