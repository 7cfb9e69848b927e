"""Knowledge-base documents as ingested, and reading them from JSON Lines."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import InvalidDocument
from retrieval.types import DOC_ID_PATTERN, KIND_PATTERN, METADATA_KEY_PATTERN


@dataclass(frozen=True)
class Document:
    """One knowledge-base entry: a character, place, faction, item, technique, event, lore or chapter."""

    id: str
    text: str
    title: str = ""
    kind: str = "lore"
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def validate(self, max_chars: int = 100_000) -> Document:
        """Raise `InvalidDocument` unless every field is storable; returns self for chaining."""
        if not DOC_ID_PATTERN.match(self.id):
            raise InvalidDocument(
                "id", "1-128 characters of A-Z a-z 0-9 _ . : - , starting with a letter or digit"
            )
        if not KIND_PATTERN.match(self.kind):
            raise InvalidDocument("kind", "lower-case ASCII word of at most 32 characters, e.g. 'character'")
        if not self.text.strip():
            raise InvalidDocument("text", "must not be empty")
        if len(self.text) > max_chars:
            raise InvalidDocument("text", f"at most {max_chars} characters")
        if len(self.title) > 300:
            raise InvalidDocument("title", "at most 300 characters")
        for key, value in self.metadata.items():
            if not METADATA_KEY_PATTERN.match(key):
                raise InvalidDocument("metadata", f"invalid key {key!r} (lower-case ASCII identifier)")
            if not isinstance(value, str | int | float | bool | list) or (
                isinstance(value, list) and not all(isinstance(v, str | int | float | bool) for v in value)
            ):
                raise InvalidDocument("metadata", f"{key}: values must be scalars or lists of scalars")
        if len(json.dumps(self.metadata, ensure_ascii=False)) > 8_000:
            raise InvalidDocument("metadata", "at most 8000 characters as JSON")
        if len(self.aliases) > 32 or any(len(a) > 64 for a in self.aliases):
            raise InvalidDocument("aliases", "at most 32 aliases of at most 64 characters")
        # NUL is refused everywhere (the API's body gate refuses it too): the store's strings
        # are C strings underneath, and no knowledge-base text needs one.
        texts = {"id": self.id, "title": self.title, "kind": self.kind, "text": self.text}
        texts.update({f"aliases[{i}]": a for i, a in enumerate(self.aliases)})
        for name, value in texts.items():
            if "\x00" in value:
                raise InvalidDocument(name, "must not contain NUL characters")
        for key, value in self.metadata.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and "\x00" in item:
                    raise InvalidDocument("metadata", f"{key}: must not contain NUL characters")
                if isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**63:
                    raise InvalidDocument("metadata", f"{key}: integers must fit in 64 bits")
                if isinstance(item, float) and not math.isfinite(item):
                    raise InvalidDocument("metadata", f"{key}: numbers must be finite")
        return self

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Document:
        """Build from a JSON object with keys id, title, text, kind, metadata, aliases."""
        return cls(
            id=str(data["id"]),
            text=str(data.get("text", "")),
            title=str(data.get("title", "")),
            kind=str(data.get("kind", "lore")),
            metadata=dict(data.get("metadata") or {}),
            aliases=tuple(str(a) for a in data.get("aliases") or ()),
        )


def read_jsonl(path: Path) -> Iterator[Document]:
    """Documents from a JSON Lines file; blank lines are skipped, bad lines raise with their number."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield Document.from_mapping(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidDocument("line", f"{path}:{number}: {exc}") from exc


def lexicon_from(paths: list[Path]) -> list[str]:
    """Names and aliases to keep whole in jieba: titles+aliases of .jsonl files, lines of .txt files."""
    words: list[str] = []
    for path in paths:
        if path.suffix == ".jsonl":
            for doc in read_jsonl(path):
                words.append(doc.title)
                words.extend(doc.aliases)
        else:
            words.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    # jieba cannot hold a word with spaces; "第十二章 雪夜渡江" contributes its parts instead.
    return [part for w in words for part in w.split() if len(part) >= 2]
