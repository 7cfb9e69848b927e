"""Fixture query sets by style: traditional characters and homophone typos in names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.converters import FIXTURES_DIR, convert_fixtures
from retrieval.understanding.correction import sound

pytestmark = pytest.mark.unit


def _queries(folder: Path) -> dict[str, str]:
    lines = (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return {q["_id"]: q["text"] for q in map(json.loads, lines)}


def test_traditional_and_typo_variants_rewrite_the_queries_only(tmp_path: Path) -> None:
    convert_fixtures(FIXTURES_DIR, tmp_path / "plain")
    convert_fixtures(FIXTURES_DIR, tmp_path / "traditional", "traditional")
    convert_fixtures(FIXTURES_DIR, tmp_path / "typo", "typo")
    convert_fixtures(FIXTURES_DIR, tmp_path / "again", "typo")
    plain, trad, typo = (_queries(tmp_path / n) for n in ("plain", "traditional", "typo"))
    assert trad.keys() == plain.keys() and trad["q001"] != plain["q001"]  # 沈青岩 -> 瀋青巖
    assert (tmp_path / "typo" / "corpus.jsonl").read_bytes() == (
        tmp_path / "plain" / "corpus.jsonl"
    ).read_bytes()
    assert typo == _queries(tmp_path / "again")  # seeded
    assert len(typo) > 100
    for qid, text in typo.items():
        original = plain[qid]
        assert len(text) == len(original) and text != original
        assert sum(a != b for a, b in zip(text, original, strict=True)) == 1
        assert sound(text) == sound(original)  # a homophone by its first reading
