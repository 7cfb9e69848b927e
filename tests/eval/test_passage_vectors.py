"""The on-disk passage vector cache, the poetry corpus, and the texts the scale benchmark encodes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from eval.bench.poem_vectors import passage_texts
from eval.bench.scale_poems import QUERY_SOURCE_POEMS, poem_queries
from eval.passage_vectors import CachedPassages, VectorCache, text_key
from eval.poetry import poem_documents
from retrieval.settings import Settings
from retrieval.types import Vectors
from tests.conftest import HashingEncoder, open_test_engine

pytestmark = pytest.mark.unit


def _vectors(n: int, dim: int = 4, seed: int = 0) -> Vectors:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_vectors_survive_a_reload_and_only_missing_texts_are_reported(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "m", 4)
    first = _vectors(3)
    cache.add(["a", "b", "c"], first)
    cache.flush()
    cache.add(["d"], _vectors(1, seed=1))
    # Not flushed: a reload sees the first shard only.
    again = VectorCache(tmp_path / "m", 4)
    assert len(again) == 3 and again.missing(["a", "d", "c", "e"]) == [1, 3]
    np.testing.assert_array_equal(again.lookup(["c", "a"]), first[[2, 0]])
    with pytest.raises(KeyError):
        again.lookup(["d"])
    cache.flush()
    assert len(VectorCache(tmp_path / "m", 4)) == 4
    assert sorted(p.suffix for p in (tmp_path / "m").iterdir()) == [".npz", ".npz"]  # no temp files


def test_a_key_ending_in_a_nul_byte_is_found_again(tmp_path: Path) -> None:
    # NumPy's fixed-width bytes drop trailing NULs on reading; about one digest in 256 ends in one.
    text = next(f"文{i}" for i in range(10_000) if text_key(f"文{i}").endswith(b"\0"))
    cache = VectorCache(tmp_path / "m", 4)
    cache.add([text], _vectors(1))
    cache.flush()
    assert VectorCache(tmp_path / "m", 4).missing([text]) == []


def test_a_text_in_two_shards_keeps_its_first_vector(tmp_path: Path) -> None:
    one, two = VectorCache(tmp_path / "m", 4), VectorCache(tmp_path / "m", 4)  # two runs at once
    one.add(["x", "y"], _vectors(2, seed=1))
    two.add(["y", "z"], _vectors(2, seed=2))
    one.flush()
    two.flush()
    merged = VectorCache(tmp_path / "m", 4)
    assert len(merged) == 3
    shards = sorted((tmp_path / "m").glob("part-*.npz"))
    kept: dict[bytes, object] = {}
    for shard in shards:
        with np.load(shard) as data:
            for key, vector in zip(data["keys"], data["vectors"], strict=True):
                kept.setdefault(bytes(key), vector)
    np.testing.assert_array_equal(merged.lookup(["y"])[0], kept[text_key("y")])


def test_a_shard_of_another_dimension_is_refused(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "m", 4)
    cache.add(["a"], _vectors(1))
    cache.flush()
    with pytest.raises(ValueError, match="expected"):
        VectorCache(tmp_path / "m", 8)


async def test_cached_passages_encode_only_what_the_cache_lacks(tmp_path: Path) -> None:
    class Counting(HashingEncoder):
        def __init__(self) -> None:
            super().__init__(dim=16)
            self.seen: list[str] = []

        async def encode_passages(self, texts: list[str]) -> Vectors:
            self.seen += texts
            return await super().encode_passages(texts)

    real = Counting()
    cache = VectorCache(tmp_path / "m", 16)
    wrapped = CachedPassages(real, cache)
    first = await wrapped.encode_passages(["甲", "乙"])
    second = await wrapped.encode_passages(["乙", "丙", "甲"])
    assert real.seen == ["甲", "乙", "丙"]
    np.testing.assert_array_equal(second[[2, 0]], first)
    np.testing.assert_array_equal(second[1], (await real.encode_passages(["丙"]))[0])
    assert len(VectorCache(tmp_path / "m", 16)) == 3  # flushed as it went


def test_sizes_are_prefixes_of_one_fixed_order() -> None:
    small = [d.id for d in poem_documents(50)]
    large = [d.id for d in poem_documents(500)]
    assert large[:50] == small and len(set(large)) == 500
    # Shuffled, not file order: both dynasties early on.
    assert {i.split("-")[0] for i in small} == {"song", "tang"}
    doc = next(poem_documents(1))
    assert doc.kind == "poem" and doc.text and set(doc.metadata) == {"author", "dynasty"}
    doc.validate()


async def test_passage_texts_are_what_ingestion_embeds(settings: Settings) -> None:
    class Recording(HashingEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        async def encode_passages(self, texts: list[str]) -> Vectors:
            self.seen += texts
            return await super().encode_passages(texts)

    docs = list(poem_documents(40))
    recorder = Recording()
    engine = await open_test_engine(settings, recorder)
    try:
        await engine.kb.ingest(docs)
    finally:
        await engine.close()
    assert passage_texts(docs, settings) == recorder.seen


def test_queries_come_from_poems_every_size_holds() -> None:
    queries = poem_queries()
    assert len(queries) >= 200 and len(set(queries)) > 0.95 * len(queries)
    texts = {d.text for d in poem_documents(QUERY_SOURCE_POEMS)}
    verses = [q for q in queries if " " not in q]
    assert all(any(q in t for t in texts) for q in verses[:50])
    assert all(len(re.sub(r"[，。！？；、]", "", q)) == len(q) for q in verses)
