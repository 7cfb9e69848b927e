"""Filters become Milvus expressions only from validated parts; injection attempts are refused."""

from __future__ import annotations

import pytest

from retrieval.errors import InvalidFilter
from retrieval.store.filters import milvus_expression
from retrieval.types import SearchFilter


@pytest.mark.unit
def test_expression_from_valid_parts() -> None:
    f = SearchFilter.build(
        kinds=["item", "character"], doc_ids=["char-0001"], metadata={"realm": "金丹", "rank": 3}
    )
    assert milvus_expression(f) == (
        'kind in ["character", "item"] and doc_id in ["char-0001"] '
        'and metadata["rank"] == 3 and metadata["realm"] == "金丹"'
    )
    assert SearchFilter.build(kinds="item").kinds == ("item",)
    assert milvus_expression(SearchFilter()) == ""
    assert milvus_expression(SearchFilter.build(metadata={"alive": True})) == 'metadata["alive"] == true'


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kinds", "doc_ids", "metadata"),
    [
        ('item" or 1==1 or kind == "', None, None),
        ("item) or (1==1", None, None),
        (None, ['x"] or id != ["'], None),
        (None, ["a b"], None),
        (None, None, {'realm"] == 1 or metadata["x': "y"}),
        (None, None, {"realm": 'a" or 1==1 or "'}),
        (None, None, {"realm": "a\\"}),
        (None, None, {"realm": "x" * 1000}),
        (None, None, {"rank": float("nan")}),
        ("x" * 100, None, None),
        ([f"k{i}" for i in range(500)], None, None),
        (None, ["a" * 200], None),
        (None, None, {"k" * 100: 1}),
        (None, None, {"realm or 1": 1}),
        (None, None, {"realm": "line\nbreak"}),
        (None, None, {f"k{i}": i for i in range(17)}),
        (None, None, {"rank": 2**70}),
        ("ITEM", None, None),
    ],
)
def test_injection_attempts_are_refused(kinds: object, doc_ids: object, metadata: object) -> None:
    with pytest.raises(InvalidFilter):
        SearchFilter.build(kinds, doc_ids, metadata)  # type: ignore[arg-type]


@pytest.mark.unit
@pytest.mark.parametrize(
    "value",
    ["a) or (1==1", "x || true", "1 == 1 or kind != x", "金丹 and not false", "a' or '1'='1", "[1] in [1]"],
)
def test_operators_inside_a_value_stay_inside_one_string_literal(value: str) -> None:
    # Without quotes, backslashes or control characters a value cannot close its literal, so
    # whatever operators it spells are text compared for equality, never parsed as expression.
    expression = milvus_expression(SearchFilter.build(metadata={"realm": value}))
    assert expression == f'metadata["realm"] == "{value}"'
