"""A synthetic Chinese web-novel corpus at any size, built from the fixtures' vocabulary and sentences.

Scale benchmarks need 10k-1M chunks that look like the real knowledge base to jieba, BM25 and the
encoder: the same kinds in the same proportions, names built from the same characters, aliases
made the way the fixtures make them (a given name, a shortened place or sect name, an epithet),
metadata with the fixtures' own keys and values, and sentences taken from the fixtures with every
known name or alias swapped for a generated one, so term statistics (a long tail of names, a head
of common words) resemble the real thing. Deterministic for a given seed.

    uv run python -m eval.synthetic --chunks 100000 --out data/synthetic-100k.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from retrieval.documents import Document, read_jsonl
from retrieval.encoders.protocol import Encoder
from retrieval.settings import PROJECT_ROOT
from retrieval.types import Vectors

FIXTURES = PROJECT_ROOT / "fixtures" / "kb.jsonl"
_SENTENCE = re.compile(r"[^。！？]+[。！？]")


@dataclass
class _Vocabulary:
    kinds: list[str]
    weights: list[int]
    sentences: dict[str, list[str]]
    names: list[str]
    surnames: list[str]
    given_chars: list[str]
    prefix_chars: list[str]
    suffixes: dict[str, list[str]]
    metadata_values: dict[str, dict[str, list[str | int]]]
    alias_rate: dict[str, float]
    epithet_tails: list[str]


def _vocabulary(fixtures: Path) -> _Vocabulary:
    docs = list(read_jsonl(fixtures))
    by_kind: dict[str, list[Document]] = defaultdict(list)
    for doc in docs:
        by_kind[doc.kind].append(doc)
    # Longest first, so "沈青崖" is replaced before "青崖" inside it.
    names = sorted(
        {n for d in docs for n in (d.title, *d.aliases) if len(n) >= 2 and " " not in n},
        key=len,
        reverse=True,
    )
    characters = [d.title for d in by_kind.get("character", []) if 2 <= len(d.title) <= 4]
    suffixes = {
        kind: sorted({d.title[-1] for d in group if d.title and " " not in d.title})
        for kind, group in by_kind.items()
    }
    return _Vocabulary(
        kinds=sorted(by_kind),
        weights=[len(by_kind[k]) for k in sorted(by_kind)],
        sentences={k: [s for d in g for s in _SENTENCE.findall(d.text)] for k, g in by_kind.items()},
        names=names,
        surnames=sorted({n[0] for n in characters}),
        given_chars=sorted({ch for n in characters for ch in n[1:]}),
        prefix_chars=sorted(
            {ch for d in docs if d.kind != "chapter" for ch in d.title[:-1] if "\u4e00" <= ch <= "\u9fff"}
        ),
        suffixes=suffixes,
        metadata_values={k: _metadata_values(g) for k, g in by_kind.items()},
        alias_rate={k: sum(bool(d.aliases) for d in g) / len(g) for k, g in by_kind.items()},
        # Epithets such as 断剑客 / 照影剑主 / 玉面剑: keep their last one or two characters.
        epithet_tails=sorted(
            {a[-2:] if len(a) >= 3 else a[-1] for d in by_kind.get("character", []) for a in d.aliases}
        ),
    )


def _metadata_values(docs: list[Document]) -> dict[str, list[str | int]]:
    """Each metadata key of these documents with every value it takes (a value's frequency kept)."""
    values: dict[str, list[str | int]] = defaultdict(list)
    for doc in docs:
        for key, value in doc.metadata.items():
            if isinstance(value, str | int) and not isinstance(value, bool):
                values[key].append(value)
    return dict(values)


class SyntheticCorpus:
    """Generates documents of about `target_chars` characters each (one chunk per document)."""

    def __init__(self, seed: int = 7, target_chars: int = 190, fixtures: Path = FIXTURES):
        self.rng = random.Random(seed)
        self.target_chars = target_chars
        self.vocab = _vocabulary(fixtures)
        self._made: list[str] = []

    def _name(self, kind: str) -> str:
        rng, v = self.rng, self.vocab
        if kind == "character":
            return rng.choice(v.surnames) + "".join(rng.choices(v.given_chars, k=rng.choice((1, 2, 2))))
        if kind == "chapter":
            return f"第{rng.randint(1, 9999)}章 " + "".join(rng.choices(v.prefix_chars, k=4))
        suffix = rng.choice(v.suffixes.get(kind) or ["记"])
        return "".join(rng.choices(v.prefix_chars, k=rng.choice((1, 2, 3)))) + suffix

    def _other_name(self) -> str:
        # Reuse earlier names often enough that entities recur across documents, as in a novel.
        if len(self._made) > 200 and self.rng.random() < 0.5:
            return self.rng.choice(self._made[-20000:])
        return self._name(self.rng.choice(("character", "location", "faction", "item")))

    def _aliases(self, kind: str, title: str) -> tuple[str, ...]:
        """Aliases as the fixtures form them, as often as the fixtures give an entry of this kind any."""
        rng, v = self.rng, self.vocab
        if kind == "chapter" or rng.random() >= v.alias_rate.get(kind, 0.0):
            return ()
        if kind == "character":
            given = title[1:]
            candidates = [
                given,  # 青崖
                title[0] + rng.choice(("七", "三", "老", "少", "公子", "宗主")),  # 顾七, 裴宗主
                rng.choice(given) + rng.choice(v.epithet_tails),  # 崖公子, 鹤师兄
                "".join(rng.choices(v.prefix_chars, k=1)) + rng.choice(v.epithet_tails),  # 断剑客
            ]
        else:
            stem = title[:-1] if len(title) >= 3 else title
            candidates = [stem[:2], title[:2] + title[-1], stem + rng.choice(v.suffixes.get(kind) or ["记"])]
        chosen = rng.sample(candidates, k=rng.choice((1, 1, 2)))
        return tuple(dict.fromkeys(a for a in chosen if len(a) >= 2 and a != title))

    def _rename(self, sentence: str, own: tuple[str, ...]) -> str:
        for name in self.vocab.names:
            if name in sentence:
                mine = self.rng.random() < 0.25
                sentence = sentence.replace(name, self.rng.choice(own) if mine else self._other_name())
        return sentence

    def _metadata(self, kind: str) -> dict[str, str | int]:
        # Values observed for the key in this kind: realistic cardinality for filters and JSON size.
        observed = self.vocab.metadata_values.get(kind, {})
        return {key: self.rng.choice(values) for key, values in observed.items()}

    def document(self, index: int) -> Document:
        """The index-th document (ids `syn-<index>`)."""
        rng, v = self.rng, self.vocab
        kind = rng.choices(v.kinds, weights=v.weights, k=1)[0]
        title = self._name(kind)
        self._made.append(title.split()[-1])
        aliases = self._aliases(kind, title)
        # Texts name their entry mostly by its title and sometimes by an alias, as the fixtures do.
        own = (title, title, *aliases)
        pool = v.sentences.get(kind) or v.sentences[v.kinds[0]]
        text = ""
        while len(text) < self.target_chars:
            text += self._rename(rng.choice(pool), own)
        return Document(
            id=f"syn-{index:07d}",
            title=title,
            kind=kind,
            text=text[: int(self.target_chars * 1.3)],
            metadata=self._metadata(kind),
            aliases=aliases,
        )

    def documents(self, n: int) -> Iterator[Document]:
        """The first n documents."""
        for i in range(n):
            yield self.document(i)


def write_jsonl(docs: Iterator[Document], path: Path) -> int:
    """Write documents as JSON Lines (the `search-api ingest` format); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(
                json.dumps(
                    {
                        "id": doc.id,
                        "title": doc.title,
                        "kind": doc.kind,
                        "aliases": list(doc.aliases),
                        "text": doc.text,
                        "metadata": doc.metadata,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
            count += 1
    return count


def main() -> None:
    """Write a synthetic corpus."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--chars", type=int, default=190)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    n = write_jsonl(SyntheticCorpus(args.seed, args.chars).documents(args.chunks), args.out)
    print(f"wrote {n} documents to {args.out}")


class PassageStandIn:
    """The real model for queries; subclasses stand in for passage vectors.

    Scale benchmarks would otherwise spend hours encoding passages on 2 cores; what they measure
    (the store, the request path) only needs vectors of the right shape and spread.
    """

    def __init__(self, real: Encoder):
        self.real = real

    @property
    def model_id(self) -> str:
        """The real model's id, so the collection records the model queries come from."""
        return self.real.model_id

    @property
    def dim(self) -> int:
        """The real model's dimension."""
        return self.real.dim

    async def discover_dim(self) -> int:
        """The real model's dimension."""
        return self.real.dim

    async def encode_queries(self, texts: list[str]) -> Vectors:
        """Queries are always encoded by the real model."""
        return await self.real.encode_queries(texts)

    async def ready(self) -> bool:
        """Ready once constructed (the real model is loaded)."""
        return True

    async def close(self) -> None:
        """Close the real model."""
        await self.real.close()


if __name__ == "__main__":
    main()
