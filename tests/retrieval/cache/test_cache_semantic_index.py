"""The partitioned vector matrix behind the semantic tier."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.cache.guards import guard_signature
from retrieval.cache.semantic_index import SemanticIndex, unit_vector
from tests.retrieval.cache.cache_test_support import DIM, at_cosine, random_unit

PLAIN = guard_signature("q", frozenset())


def fill(index: SemanticIndex, count: int, *, partition: str = "p", version: int = 1) -> np.ndarray:
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i in range(count):
        index.add(f"id{i}", partition, vectors[i], PLAIN, version, expires_at=100.0)
    return vectors


async def best(index: SemanticIndex, vector: np.ndarray, **kwargs: float) -> list[str]:
    settings: dict[str, float] = {"version": 1, "threshold": 0.9, "now": 0.0}
    settings.update(kwargs)
    match = await index.search(
        "p",
        unit_vector(vector),
        PLAIN,
        version=int(settings["version"]),
        threshold=settings["threshold"],
        now=settings["now"],
    )
    return [entry_id for entry_id, _ in match.candidates]


@pytest.mark.unit
async def test_removal_and_compaction_keep_ids_and_rows_aligned() -> None:
    index = SemanticIndex(offload_rows=10_000)
    vectors = fill(index, 3000)
    index.remove_many([f"id{i}" for i in range(0, 3000, 3)] + [f"id{i}" for i in range(1, 3000, 3)])
    assert len(index) == 1000
    for i in (2, 1502, 2999):
        assert (await best(index, at_cosine(vectors[i], 0.95)))[0] == f"id{i}"
    assert await best(index, vectors[0]) == []


@pytest.mark.unit
async def test_overwrite_replaces_the_row() -> None:
    index = SemanticIndex()
    old, new = random_unit(1), random_unit(2)
    index.add("a", "p", old, PLAIN, 1, 100.0)
    index.add("a", "p", new, PLAIN, 1, 100.0)
    assert len(index) == 1
    assert await best(index, old) == []
    assert await best(index, new) == ["a"]


@pytest.mark.unit
async def test_version_expiry_and_bound_filter_rows() -> None:
    index = SemanticIndex(max_rows=2)
    a, b, c = random_unit(1), random_unit(2), random_unit(3)
    index.add("a", "p", a, PLAIN, 1, 100.0)
    index.add("b", "p", b, PLAIN, 2, 100.0)
    assert await best(index, a, version=2) == []  # written under another version
    assert await best(index, b, version=2, now=100.0) == []  # expired at 100
    index.add("c", "p", c, PLAIN, 1, 100.0)  # over max_rows: the oldest row ("a") goes
    assert "a" not in index
    assert len(index) == 2
    assert index.purge(now=0.0, min_version=2) == 1  # drops "c" (version 1)
    assert list(await best(index, b, version=2)) == ["b"]


@pytest.mark.unit
def test_malformed_vectors_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        unit_vector(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="finite"):
        unit_vector(np.array([np.nan, 1.0], np.float32))
    assert unit_vector(np.ones((1, 4), np.float32)).shape == (4,)
    index = SemanticIndex()
    index.add("a", "p", random_unit(1), PLAIN, 1, 1.0)
    with pytest.raises(ValueError, match="dim"):
        index.add("b", "p", random_unit(1, dim=DIM + 1), PLAIN, 1, 1.0)
