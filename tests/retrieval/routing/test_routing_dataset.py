"""Labelled files, generated question frames and quotes, and the shipped intent data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from retrieval.documents import read_jsonl
from retrieval.settings import PROJECT_ROOT
from retrieval.training.intents.dataset import (
    LabelledUtterance,
    frame_utterances,
    kb_names,
    quote_utterances,
    read_labelled,
    read_texts,
    write_labelled,
)

pytestmark = pytest.mark.unit

INTENTS = PROJECT_ROOT / "fixtures" / "intents"
DOCS = list(read_jsonl(PROJECT_ROOT / "fixtures" / "kb.jsonl"))


def test_labelled_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    rows = [LabelledUtterance("沈青崖是谁", "character"), LabelledUtterance("今天天气", "out_of_scope")]
    assert write_labelled(rows, path) == 2
    assert read_labelled(path) == rows
    assert read_texts(path) == ["沈青崖是谁", "今天天气"]
    path.write_text('{"text": "a", "label": "b"}\n\n{"text": "c"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.jsonl:3"):
        read_labelled(path)
    path.write_text('{"text": " ", "label": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="non-empty"):
        read_labelled(path)


def test_frames_never_use_names_of_held_out_texts() -> None:
    held_out = ["沈青崖的师父是谁", "栖岚剑宗在哪"]
    frames = frame_utterances(DOCS, per_frame=5, exclude=held_out, seed=1)
    assert frames and {u.label for u in frames} <= {
        "character",
        "location",
        "faction",
        "item_technique",
        "event",
        "lore",
    }
    # 沈青崖's entry (aliases 青崖, 崖公子, 断剑客) is out; an event titled 沈青崖拜师 may still appear.
    for u in frames:
        assert not any(name in u.text for name in ("断剑客", "崖公子", "栖岚派", "岚宗")), u.text
        assert "沈青崖" not in u.text.replace("沈青崖拜师", ""), u.text
    assert frame_utterances(DOCS, per_frame=5, exclude=held_out, seed=1) == frames


def test_generated_quotes_share_no_six_character_run_with_held_out_text() -> None:
    held_out = [
        json.loads(line)["text"]
        for line in (PROJECT_ROOT / "fixtures" / "queries.jsonl").open(encoding="utf-8")
    ]
    quotes = quote_utterances(DOCS, count=200, exclude=held_out)
    assert len(quotes) >= 50 and all(u.label == "quote" and 8 <= len(u.text) <= 25 for u in quotes)
    for u in quotes:
        assert not any(u.text[i : i + 6] in h for h in held_out for i in range(len(u.text) - 5)), u.text


def test_kb_names_cover_titles_aliases_and_chapter_parts() -> None:
    names, kinds = kb_names(DOCS)
    pairs = set(zip(names, kinds, strict=True))
    assert ("沈青崖", "character") in pairs and ("断剑客", "character") in pairs
    assert ("第十二章", "chapter") in pairs and ("雪夜渡江", "chapter") in pairs


def test_shipped_intent_data_is_sound() -> None:
    train = read_labelled(INTENTS / "train.jsonl")
    test = read_labelled(INTENTS / "test.jsonl")
    train_counts, test_counts = Counter(r.label for r in train), Counter(r.label for r in test)
    assert len(train_counts) >= 8 and set(train_counts) == set(test_counts)
    assert min(train_counts.values()) >= 40 and min(test_counts.values()) >= 15
    assert not {r.text for r in train} & {r.text for r in test}
    judged = {
        json.loads(line)["text"]
        for line in (PROJECT_ROOT / "fixtures" / "queries.jsonl").open(encoding="utf-8")
    }
    assert not {r.text for r in train} & judged
    labels = [json.loads(line) for line in (INTENTS / "queries_labels.jsonl").open(encoding="utf-8")]
    assert len(labels) == len(judged) and {row["intent"] for row in labels} <= set(train_counts)
