"""Search filters rendered as Milvus boolean expressions, from validated values only.

Milvus Lite 2.5 does not support expression templating (`filter_params`), so every value is
rendered as a literal here, in one place, after `SearchFilter.build` (or `check_scalar`) has
validated it against a strict pattern: a value can never close its string literal, so operator
text inside it is just text and matches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from retrieval.types import Scalar, SearchFilter, check_scalar


def _literal(value: Scalar, name: str) -> str:
    check_scalar(value, name)
    # bool before int: bool is a subclass of int and Milvus spells it lower case.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return f'"{value}"'


def _list(values: Sequence[str], name: str) -> str:
    return "[" + ", ".join(_literal(v, name) for v in values) + "]"


def milvus_expression(where: SearchFilter) -> str:
    """The Milvus boolean expression of a filter ('' when unrestricted)."""
    clauses: list[str] = []
    if where.kinds:
        clauses.append(f"kind in {_list(where.kinds, 'kind')}")
    if where.doc_ids:
        clauses.append(f"doc_id in {_list(where.doc_ids, 'doc_id')}")
    for key, value in where.metadata:
        clauses.append(f'metadata["{key}"] == {_literal(value, f"metadata.{key}")}')
    return " and ".join(clauses)


def doc_ids_expression(doc_ids: Sequence[str]) -> str:
    """Expression selecting every chunk of the given documents (validated here)."""
    return milvus_expression(SearchFilter.build(doc_ids=doc_ids))


def titles_expression(titles: Sequence[str], where: SearchFilter) -> str:
    """Chunks whose title is one of `titles` and that `where` allows (titles validated here)."""
    clause = f"title in {_list(titles, 'title')}"
    rest = milvus_expression(where)
    return f"{clause} and ({rest})" if rest else clause
