"""Labelled utterances: reading and writing them, and deriving more from the knowledge base itself.

Most intent errors are bare names: nothing in "栖梧琴" tells a general-purpose embedding that it
is an item of this world rather than a person. The knowledge base knows: every title and alias
has a kind. `kb_utterances` turns entries into labelled utterances (the bare title, every alias,
and one templated question per entry), so the head learns the naming habits of each kind
(…剑/…珠/…丹 items, …诀/…术/…步 techniques, …城/…峰/…渡 places, …之战/…之变 events).

Entries can be held out (`exclude`): pass the test utterances, and no entry they name is used,
which keeps the test set entity-disjoint from training, so its score measures queries about
entities the head never saw, not recall of memorised names.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.documents import Document

# KB kind -> intent. Chapters are looked up by number or title; quotes are spans, not names.
KIND_TO_INTENT: Mapping[str, str] = {
    "character": "character",
    "location": "location",
    "faction": "faction",
    "item": "item",
    "technique": "technique",
    "event": "event",
    "lore": "lore",
    "chapter": "chapter",
}

TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "character": ("{}是谁", "介绍一下{}", "{}是什么人", "{}这个人物", "{}的身世"),
    "location": ("{}在哪里", "{}是什么地方", "{}在哪个州", "去{}怎么走", "{}这个地方"),
    "faction": ("{}是什么门派", "{}是什么势力", "{}有哪些人", "{}是正是邪", "{}这个组织"),
    "item": ("{}有什么用", "{}是什么东西", "{}现在在谁手里", "{}是什么宝物", "{}的来历"),
    "technique": ("{}是什么功法", "{}怎么练", "{}是谁的武功", "{}有几式", "{}这门功夫"),
    "event": ("{}的经过", "{}是怎么回事", "{}发生在哪一年", "{}最后结果如何", "{}那件事"),
    "lore": ("{}是什么意思", "什么是{}", "{}是怎么回事", "{}的规矩", "解释一下{}"),
    "chapter": ("{}讲了什么", "{}那一章", "{}的剧情", "{}写了什么", "{}这一章"),
}

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


def kb_utterances(
    documents: Sequence[Document],
    *,
    exclude: Iterable[str] = (),
    seed: int = 0,
    templated_per_entry: int = 1,
) -> list[LabelledUtterance]:
    """Bare titles, aliases and templated questions of every entry whose kind maps to an intent.

    An entry is skipped when any of its names occurs in one of the `exclude` texts; a generated
    utterance equal to an `exclude` text is never emitted either.
    """
    rng = random.Random(seed)
    held_out = [t for t in exclude if t]
    held_set = set(held_out)
    out: list[LabelledUtterance] = []
    seen: set[str] = set()
    for doc in documents:
        intent = KIND_TO_INTENT.get(doc.kind)
        if intent is None:
            continue
        names = _names(doc)
        # Names of one or two characters ("灵脉", "照影") also occur inside unrelated words, so only
        # names of 2+ characters count as a mention; that is every name in this KB.
        if any(len(n) >= 2 and n in text for n in names for text in held_out):
            continue
        candidates = list(names)
        templates = TEMPLATES[intent]
        for name in rng.sample(names, k=min(templated_per_entry, len(names))):
            candidates.append(rng.choice(templates).format(name))
        for text in candidates:
            if text not in seen and text not in held_set:
                seen.add(text)
                out.append(LabelledUtterance(text, intent))
    return out


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
    ),
    "location": (
        "{c}是哪里人",
        "{c}住在哪里",
        "{f}的总坛在哪",
        "{f}的山门在什么地方",
        "{e}发生在什么地方",
        "{l}在哪个州",
        "去{l}的路怎么走",
        "{l}附近有什么地方",
    ),
    "faction": (
        "{c}是哪个门派的",
        "{c}投靠了哪个势力",
        "{l}归哪个门派管",
        "{t}是哪个宗门的功法",
        "{f}是个什么样的组织",
        "{f}门下有多少弟子",
        "{c}背后是哪个组织",
    ),
    "item": (
        "{c}用的是什么兵器",
        "{c}随身带着什么法宝",
        "{f}的镇派之宝是什么",
        "{i}是用什么炼成的",
        "{i}现在在谁手里",
        "{i}有什么用处",
        "{c}的佩剑叫什么",
        "{i}值多少灵铢",
    ),
    "technique": (
        "{c}练的是什么功法",
        "{c}的成名绝技是什么",
        "{f}的镇派武学是什么",
        "{t}一共有几式",
        "{t}怎么修炼",
        "{c}擅长什么身法",
        "{t}练成了有什么威力",
    ),
    "event": (
        "{c}经历过哪些大事",
        "{l}发生过什么大事",
        "{f}参与过哪些战役",
        "{e}是哪一年发生的",
        "{e}的来龙去脉",
        "{e}最后谁赢了",
        "{c}在{e}里做了什么",
    ),
    "lore": (
        "{o}是什么规矩",
        "{o}有什么讲究",
        "违反{o}会怎么样",
        "{o}的由来",
        "{o}是怎么规定的",
        "修士为什么要在意{o}",
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
