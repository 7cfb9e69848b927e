"""The synthetic corpus looks like the fixtures to the parts of the engine that read it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from eval.synthetic import FIXTURES, SyntheticCorpus, write_jsonl
from retrieval.documents import read_jsonl

pytestmark = pytest.mark.unit

_FIXTURES = list(read_jsonl(FIXTURES))


def test_same_seed_same_corpus_other_seed_another() -> None:
    first = [d.text for d in SyntheticCorpus(seed=3).documents(50)]
    assert first == [d.text for d in SyntheticCorpus(seed=3).documents(50)]
    assert first != [d.text for d in SyntheticCorpus(seed=4).documents(50)]


def test_kinds_in_the_fixtures_proportions() -> None:
    docs = list(SyntheticCorpus(seed=1).documents(3000))
    made = Counter(d.kind for d in docs)
    real = Counter(d.kind for d in _FIXTURES)
    assert set(made) == set(real)
    for kind, count in real.items():
        assert abs(made[kind] / len(docs) - count / len(_FIXTURES)) < 0.03, kind


def test_entries_carry_aliases_and_fixture_metadata_and_are_named_in_their_text() -> None:
    docs = list(SyntheticCorpus(seed=2).documents(1000))
    for doc in docs:
        doc.validate()
    with_aliases = [d for d in docs if d.aliases]
    # The fixtures give an alias to 89% of entries (none to chapters); the generator follows.
    assert 0.6 < len(with_aliases) / len(docs) < 0.95
    assert all(a != d.title and len(a) >= 2 for d in with_aliases for a in d.aliases)
    named = sum(1 for d in docs if d.kind != "chapter" and any(n in d.text for n in (d.title, *d.aliases)))
    assert named / sum(d.kind != "chapter" for d in docs) > 0.9
    fixture_values = {(k, v) for d in _FIXTURES for k, v in d.metadata.items()}
    characters = [d for d in docs if d.kind == "character"]
    assert characters and all(set(d.metadata) >= {"faction", "realm"} for d in characters)
    assert all((k, v) in fixture_values for d in docs for k, v in d.metadata.items())


def test_fixture_names_are_swapped_out() -> None:
    """Synthetic entries must not compete with the fixtures' own entities for their judged queries."""
    docs = list(SyntheticCorpus(seed=5).documents(500))
    long_names = {n for d in _FIXTURES for n in (d.title, *d.aliases) if len(n) >= 3 and " " not in n}
    leaked = [n for n in long_names if any(n in d.text for d in docs)]
    # Generated names are built from the same characters, so a rare collision can happen by chance.
    assert len(leaked) <= 0.02 * len(long_names), leaked[:10]


def test_written_lines_read_back_as_the_same_documents(tmp_path: Path) -> None:
    docs = list(SyntheticCorpus(seed=6).documents(20))
    path = tmp_path / "syn.jsonl"
    assert write_jsonl(iter(docs), path) == 20
    assert list(read_jsonl(path)) == docs
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0])["id"] == "syn-0000000"
