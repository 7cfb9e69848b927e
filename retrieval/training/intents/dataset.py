"""Labelled utterances: reading and writing them, and question frames filled from the KB.

An embedding mostly encodes the name in a short query ("栖梧琴现在在谁手上" sits next to
"栖梧琴"), while the intent is decided by the wording around it ("在谁手上" asks for a person).
`frame_utterances` pairs many KB names with many hand-written question frames whose intent
differs from the kind of the name inside, which teaches the head to weigh the frame.

Labelling guideline (fixtures/intents/README.md): the intent is the kind of thing the wording
asks for; a query that is only a name is `name`; questions about a named event stay `event`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.documents import Document

_CHAPTER_TITLE = re.compile(r"^(第[一二三四五六七八九十百零〇]+章)\s*(.*)$")


@dataclass(frozen=True)
class LabelledUtterance:
    """One training or test line: ``{"text": ..., "label": ...}``."""

    text: str
    label: str


def read_labelled(path: Path) -> list[LabelledUtterance]:
    """Lines of ``{"text", "label"}``; blank lines skipped, bad lines raise ValueError with their number."""
    rows: list[LabelledUtterance] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text, label = obj["text"], obj["label"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: expected {{'text', 'label'}} ({exc})") from exc
            if not isinstance(text, str) or not text.strip() or not isinstance(label, str) or not label:
                raise ValueError(f"{path}:{number}: text and label must be non-empty strings")
            rows.append(LabelledUtterance(text.strip(), label))
    return rows


def read_texts(path: Path) -> list[str]:
    """The `text` of every line (labels optional), for prediction inputs."""
    texts: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: expected an object with `text` ({exc})") from exc
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: text must be a string")
            texts.append(text)
    return texts


def write_labelled(rows: Iterable[LabelledUtterance], path: Path) -> int:
    """Write JSON Lines; returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"text": row.text, "label": row.label}, ensure_ascii=False) + "\n")
            count += 1
    return count


def _names(doc: Document) -> list[str]:
    if doc.kind == "chapter":
        match = _CHAPTER_TITLE.match(doc.title.strip())
        if match:
            return [p for p in (match.group(0), match.group(1), match.group(2)) if p]
    return [n for n in (doc.title, *doc.aliases) if n.strip()]


# Question frames: the wording asks for one kind while the name in it belongs to another
# ("<character>用的是什么兵器" asks for an item). Pairing many names with many frames teaches the
# head that the frame, not the name, decides the intent. Slots: c character, f faction,
# l location, i item, t technique, e event, o lore.
FRAMES: Mapping[str, tuple[str, ...]] = {
    "character": (
        "{c}的师父是谁",
        "{c}的徒弟有哪些人",
        "{c}的父亲叫什么",
        "{c}和谁是死对头",
        "{f}的掌门是谁",
        "{f}现在谁说了算",
        "谁是{f}的长老",
        "{i}的主人是谁",
        "{t}是谁创的",
        "{c}是什么境界的高手",
        "{c}的仇人是谁",
        "{c}最信任的人是谁",
        "{f}里最厉害的人是谁",
        "{f}的开派祖师是谁",
        "{l}的主人是谁",
        "谁救过{c}的命",
        "{c}的真名叫什么",
        "{c}是个怎样的人",
        "{c}的性格怎么样",
        "{c}后来怎么样了",
    ),
    "location": (
        "{c}是哪里人",
        "{c}住在哪里",
        "{f}的总坛在哪",
        "{f}的山门在什么地方",
        "{l}在哪个州",
        "去{l}的路怎么走",
        "{l}附近有什么地方",
        "{c}的老家在哪",
        "{c}在哪里闭关修炼",
        "{c}死在了什么地方",
        "{f}的分舵都设在哪些地方",
        "{i}藏在什么地方",
        "{l}在澜洲的什么方位",
        "{l}是个什么样的地方",
    ),
    "faction": (
        "{c}是哪个门派的",
        "{c}投靠了哪个势力",
        "{l}归哪个门派管",
        "{t}是哪个宗门的功法",
        "{f}是个什么样的组织",
        "{f}门下有多少弟子",
        "{c}背后是哪个组织",
        "{c}出身什么门派",
        "{c}后来加入了哪个组织",
        "{l}是哪个宗门的地盘",
        "{f}和朝廷关系如何",
        "{f}现在还有多少人",
        "{f}在江湖上名声怎么样",
        "{c}和哪个帮派有仇",
    ),
    "item_technique": (
        "{c}用的是什么兵器",
        "{c}随身带着什么法宝",
        "{f}的镇派之宝是什么",
        "{i}是用什么炼成的",
        "{i}有什么用处",
        "{c}的佩剑叫什么",
        "{i}值多少灵铢",
        "{c}练的是什么功法",
        "{c}的成名绝技是什么",
        "{f}的镇派武学是什么",
        "{t}一共有几式",
        "{t}怎么修炼",
        "{c}擅长什么身法",
        "{t}练成了有什么威力",
        "{c}最拿手的功夫是什么",
        "{c}的暗器叫什么",
        "{c}服过什么丹药",
        "{f}弟子入门先学什么功法",
        "{t}的第一式叫什么",
        "{t}有什么破绽",
        "{i}有多重",
        "{i}还能不能修好",
        "{i}是什么品级的法器",
        "{t}适合什么人练",
    ),
    "event": (
        "{c}经历过哪些大事",
        "{l}发生过什么大事",
        "{f}参与过哪些战役",
        "{e}是哪一年发生的",
        "{e}的来龙去脉",
        "{e}最后谁赢了",
        "{c}在{e}里做了什么",
        "{e}发生在什么地方",
        "{e}的起因是什么",
        "{e}死了多少人",
        "{e}之后局势怎么变了",
        "{e}的时候{c}在哪",
        "{e}是谁挑起的",
        "{e}持续了多久",
        "{c}参加过哪场大战",
    ),
    "lore": (
        "{o}是什么规矩",
        "{o}有什么讲究",
        "违反{o}会怎么样",
        "{o}的由来",
        "{o}是怎么规定的",
        "修士为什么要在意{o}",
        "{o}是什么意思",
        "关于{o}有什么说法",
        "{o}在修行界有多重要",
        "{o}对修士有什么影响",
        "{o}有哪些具体规定",
    ),
}

_SLOT_KINDS: Mapping[str, str] = {
    "c": "character",
    "f": "faction",
    "l": "location",
    "i": "item",
    "t": "technique",
    "e": "event",
    "o": "lore",
}
_SLOT = re.compile(r"\{([a-z])\}")


def frame_utterances(
    documents: Sequence[Document],
    *,
    per_frame: int = 4,
    exclude: Iterable[str] = (),
    seed: int = 0,
) -> list[LabelledUtterance]:
    """`per_frame` utterances for every frame in `FRAMES`, names drawn at random from the KB.

    Names of entries mentioned in an `exclude` text are never drawn (see `kb_utterances`).
    """
    rng = random.Random(seed)
    held_out = [t for t in exclude if t]
    pools: dict[str, list[str]] = {kind: [] for kind in _SLOT_KINDS.values()}
    for doc in documents:
        if doc.kind not in pools:
            continue
        names = _names(doc)
        if any(len(n) >= 2 and n in text for n in names for text in held_out):
            continue
        pools[doc.kind].extend(names)
    out: list[LabelledUtterance] = []
    seen = set(held_out)
    for intent, frames in FRAMES.items():
        for frame in frames:
            slots = _SLOT.findall(frame)
            if any(not pools[_SLOT_KINDS[s]] for s in slots):
                continue
            made = 0
            for _ in range(per_frame * 5):  # a few retries for duplicates
                if made >= per_frame:
                    break
                text = frame.format(**{s: rng.choice(pools[_SLOT_KINDS[s]]) for s in slots})
                if text not in seen:
                    seen.add(text)
                    out.append(LabelledUtterance(text, intent))
                    made += 1
    return out


_CLAUSE_END = re.compile(r"[。！？；：…]|”")
_PUNCT = "，、“”‘’《》（）「」 "


def _shares_run(text: str, others: Sequence[str], run: int) -> bool:
    return any(text[i : i + run] in other for other in others for i in range(len(text) - run + 1))


def quote_utterances(
    documents: Sequence[Document],
    *,
    count: int = 120,
    exclude: Iterable[str] = (),
    seed: int = 0,
    min_chars: int = 8,
    max_chars: int = 25,
    kinds: Collection[str] = ("chapter",),
) -> list[LabelledUtterance]:
    """`count` verbatim spans of KB text (the shape of a quote lookup), labelled `quote`.

    Spans are whole sentences of 8-25 characters from entries of `kinds`, as users paste them;
    chapters by default, since wiki-style entries read like descriptions, not like prose. A span
    sharing six or more consecutive characters with an `exclude` text (judged queries, test
    utterances) is skipped, so generated quotes never leak an evaluation quote into training.
    """
    rng = random.Random(seed)
    held_out = [t for t in exclude if t]
    spans: list[str] = []
    for doc in documents:
        if doc.kind not in kinds:
            continue
        for sentence in _CLAUSE_END.split(doc.text):
            clause = sentence.strip(_PUNCT)
            if min_chars <= len(clause) <= max_chars:
                spans.append(clause)
    rng.shuffle(spans)
    out: list[LabelledUtterance] = []
    seen: set[str] = set()
    for span in spans:
        if len(out) >= count:
            break
        if span in seen or _shares_run(span, held_out, 6):
            continue
        seen.add(span)
        out.append(LabelledUtterance(span, "quote"))
    return out


def kb_names(documents: Sequence[Document]) -> tuple[list[str], list[str]]:
    """Every title and alias with the kind of its entry (the anchors of the classifier)."""
    names: list[str] = []
    kinds: list[str] = []
    seen: set[tuple[str, str]] = set()
    for doc in documents:
        for name in _names(doc):
            if (name, doc.kind) not in seen:
                seen.add((name, doc.kind))
                names.append(name)
                kinds.append(doc.kind)
    return names, kinds
