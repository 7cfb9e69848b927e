"""The classical-poetry corpus (`../shared/data/poetry/`, MIT) as knowledge-base documents.

310,183 Tang and Song poems: real text, so real BM25 statistics and real embeddings for the scale
benchmarks. A size N is a prefix of one fixed shuffle of the whole corpus, so every size is a
sample of both dynasties and a smaller collection is part of every larger one.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from retrieval.documents import Document
from retrieval.settings import PROJECT_ROOT

POEMS_PATH = PROJECT_ROOT.parent / "shared" / "data" / "poetry" / "poems.jsonl.gz"
SHUFFLE_SEED = 20_261_203


def _records(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def poem_documents(limit: int | None = None, path: Path = POEMS_PATH) -> Iterator[Document]:
    """Poems in the fixed shuffled order, at most `limit` of them, one document each."""
    records = _records(path)
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(records))
    for i in order[: len(records) if limit is None else limit]:
        r = records[int(i)]
        yield Document(
            id=r["id"],
            text=r["text"],
            title=r.get("title", ""),
            kind="poem",
            metadata={"author": r.get("author", ""), "dynasty": r.get("dynasty", "")},
        )
