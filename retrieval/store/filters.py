"""Search filters turned into Milvus boolean expressions from an allow-list, never from raw text.

Milvus Lite 2.5 does not support expression templating (`filter_params`), so every value is
validated against a strict pattern and rendered as a literal here, in one place. Anything that
does not fit is refused with `InvalidFilter` (a 4xx at the API) before it reaches the engine.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")
DOC_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
METADATA_KEY_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
# Printable text without quotes or backslashes: enough for names, places and labels.
_SAFE_STRING = re.compile(r'^[^"\\\x00-\x1f\x7f]{0,256}$')
MAX_FILTER_VALUES = 100

Scalar = str | int | float | bool


class InvalidFilter(ValueError):
    """A filter that cannot be expressed safely; `field` names the offending part."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions on which chunks a search may return."""

    kinds: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    metadata: tuple[tuple[str, Scalar], ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls,
        kinds: str | Sequence[str] | None = None,
        doc_ids: Sequence[str] | None = None,
        metadata: Mapping[str, Scalar] | None = None,
    ) -> SearchFilter:
        """Validate user-supplied parts; raises `InvalidFilter`."""
        kind_list = [kinds] if isinstance(kinds, str) else list(kinds or [])
        ids = list(doc_ids or [])
        meta = dict(metadata or {})
        for name, values in (("kind", kind_list), ("doc_id", ids)):
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidFilter(name, f"at most {MAX_FILTER_VALUES} values")
        for kind in kind_list:
            if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
                raise InvalidFilter("kind", f"invalid kind {kind!r}")
        for doc_id in ids:
            if not isinstance(doc_id, str) or not DOC_ID_PATTERN.match(doc_id):
                raise InvalidFilter("doc_id", f"invalid document id {doc_id!r}")
        if len(meta) > 16:
            raise InvalidFilter("metadata", "at most 16 keys")
        for key, value in meta.items():
            if not METADATA_KEY_PATTERN.match(key):
                raise InvalidFilter("metadata", f"invalid key {key!r}")
            _literal(value, f"metadata.{key}")
        return cls(
            kinds=tuple(sorted(set(kind_list))),
            doc_ids=tuple(sorted(set(ids))),
            metadata=tuple(sorted(meta.items())),
        )

    @property
    def is_empty(self) -> bool:
        """No restriction at all."""
        return not (self.kinds or self.doc_ids or self.metadata)

    def expression(self) -> str:
        """The Milvus boolean expression ('' when unrestricted)."""
        clauses: list[str] = []
        if self.kinds:
            clauses.append(f"kind in {_list(self.kinds, 'kind')}")
        if self.doc_ids:
            clauses.append(f"doc_id in {_list(self.doc_ids, 'doc_id')}")
        for key, value in self.metadata:
            clauses.append(f'metadata["{key}"] == {_literal(value, f"metadata.{key}")}')
        return " and ".join(clauses)

    def key(self) -> str:
        """Canonical text form, for cache keys and logs."""
        return json.dumps(
            {"kind": self.kinds, "doc_id": self.doc_ids, "metadata": self.metadata},
            ensure_ascii=False,
            sort_keys=True,
        )


def _literal(value: Scalar, name: str) -> str:
    # bool before int: bool is a subclass of int and Milvus spells it lower case.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise InvalidFilter(name, "integer out of range")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilter(name, "number must be finite")
        return repr(value)
    if isinstance(value, str):
        if not _SAFE_STRING.match(value):
            raise InvalidFilter(name, "text values are at most 256 characters, without quotes or backslashes")
        return f'"{value}"'
    raise InvalidFilter(name, f"unsupported value type {type(value).__name__}")


def _list(values: Sequence[str], name: str) -> str:
    return "[" + ", ".join(_literal(v, name) for v in values) + "]"


def doc_ids_expression(doc_ids: Sequence[str]) -> str:
    """Expression selecting every chunk of the given (validated) documents."""
    return SearchFilter.build(doc_ids=doc_ids).expression()
