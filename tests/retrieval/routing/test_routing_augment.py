"""EDA never damages a lexicon entity: entities stay present and whole under every operation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.documents import lexicon_from
from retrieval.settings import PROJECT_ROOT
from retrieval.training.intents.augment import OPERATIONS, EntityProtectingEda, augment_dataset

pytestmark = pytest.mark.unit

LEXICON = lexicon_from([PROJECT_ROOT / "fixtures" / "kb.jsonl"])
# Names that are hard on purpose: near-identical, nested (沈青崖 inside 沈青崖拜师), aliases.
ENTITIES = sorted(
    {
        "沈青崖",
        "沈青岩",
        "沈清涯",
        "青崖",
        "断剑客",
        "沈青崖拜师",
        "落雁坡",
        "落雁渡",
        "雁落湖",
        "霜魄剑",
        "霜魄珠",
        "流云剑诀",
        "流云剑谱",
        "照影剑意",
        "照影十三剑",
        "寒漪夫人",
        "寒衣公子",
        "第十二章",
        "雪夜渡江",
        "栖岚剑宗",
        "哑叔",
        "青衫客",
        *LEXICON[::25],
    }
)
FILLERS = [
    "的",
    "师父",
    "是谁",
    "在哪里",
    "那一章",
    "和",
    "有什么用",
    "后来",
    "介绍",
    "一下",
    "怎么",
    "，",
    "？",
    "讲讲",
    "门派",
]


@pytest.fixture(scope="module")
def eda() -> EntityProtectingEda:
    return EntityProtectingEda(LEXICON, seed=0, alpha=0.3)


def entities_present(eda: EntityProtectingEda, text: str) -> set[str]:
    return eda.entities_in(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(st.one_of(st.sampled_from(ENTITIES), st.sampled_from(FILLERS)), min_size=1, max_size=9),
    seed=st.integers(0, 10_000),
)
def test_every_entity_survives_every_operation(eda: EntityProtectingEda, parts: list[str], seed: int) -> None:
    text = "".join(parts)
    before = entities_present(eda, text)
    rng = random.Random(seed)
    for operation in OPERATIONS:
        after_text = eda.apply(text, operation, rng)
        missing = before - entities_present(eda, after_text)
        assert not missing, f"{operation}: {text!r} -> {after_text!r} lost {missing}"
    for variant in eda.augment(text, 4):
        assert before <= entities_present(eda, variant), (text, variant)


def test_entities_are_atomic_tokens(eda: EntityProtectingEda) -> None:
    tokens = eda.tokens("沈青崖拜师时的师父是谁")
    assert tokens[0].text == "沈青崖拜师" and tokens[0].entity
    assert all(not t.entity for t in tokens[1:])
    # Overlapping names (沈青崖 and its alias 崖公子) merge into one span: a swap cannot cut either.
    assert {"沈青崖", "崖公子"} <= set(LEXICON)
    assert [t.text for t in eda.tokens("沈青崖公子的剑") if t.entity] == ["沈青崖公子"]


def test_a_bare_name_only_gains_words_around_it(eda: EntityProtectingEda) -> None:
    variants = eda.augment("沈青崖", 3)
    assert variants and all("沈青崖" in v and v != "沈青崖" for v in variants)


def test_augmentation_is_deterministic_for_a_seed() -> None:
    a = EntityProtectingEda(LEXICON, seed=3)
    b = EntityProtectingEda(LEXICON, seed=3)
    texts = ["沈青崖的师父是谁", "落雁坡在什么地方", "流云剑诀怎么修炼"]
    assert [a.augment(t, 3) for t in texts] == [b.augment(t, 3) for t in texts]


def test_synonyms_replace_free_words_only() -> None:
    eda = EntityProtectingEda(["谁是谁"], synonyms={"谁": ("哪位",)}, seed=0, alpha=1.0)
    out = eda.apply("谁是谁的师父是谁", "synonym")
    assert out.startswith("谁是谁") and "哪位" in out


def test_augment_dataset_keeps_originals_first_and_labels_aligned(eda: EntityProtectingEda) -> None:
    texts, labels = augment_dataset(["沈青崖的师父是谁", "霜魄剑有什么用"], ["character", "item"], eda, 2)
    assert texts[:2] == ["沈青崖的师父是谁", "霜魄剑有什么用"]
    assert len(texts) == len(labels) > 2
    assert all(lab == "character" for t, lab in zip(texts, labels, strict=True) if "沈青崖" in t)


def test_bad_arguments_are_refused(eda: EntityProtectingEda) -> None:
    with pytest.raises(ValueError, match="unknown EDA operation"):
        eda.apply("沈青崖是谁", "shuffle")
    with pytest.raises(ValueError, match="alpha"):
        EntityProtectingEda([], alpha=0.0)
    with pytest.raises(ValueError, match="n must be"):
        eda.augment("x", -1)


def test_lexicon_file_is_the_kb() -> None:
    assert Path(PROJECT_ROOT / "fixtures" / "kb.jsonl").exists() and "沈青崖" in LEXICON
