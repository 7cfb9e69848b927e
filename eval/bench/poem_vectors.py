"""Encode the poetry corpus's passages with the served model, once, into the vector cache.

    nice -n 19 uv run search-eval bench poem_vectors --count 300000

The texts are exactly what ingestion embeds (`chunk_text`, then `index_text` with the configured
chunking), so `bench scale --corpus poems` later finds every passage in the cache and encodes
none. Passages are encoded shortest first in fixed-size batches (little padding per batch) and
written every `--flush` vectors; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

from eval.passage_vectors import DEFAULT_ROOT, VectorCache
from eval.poetry import poem_documents
from retrieval.chunking import chunk_text
from retrieval.collections.specs import ensure_built_model, local_encoder
from retrieval.documents import Document
from retrieval.knowledge_base import index_text
from retrieval.settings import Settings, load_settings

logger = logging.getLogger(__name__)


def passage_texts(documents: Sequence[Document], settings: Settings) -> list[str]:
    """What ingestion embeds for these documents, chunk by chunk, in order."""
    c = settings.chunking
    return [
        index_text(doc.title, piece.text, doc.aliases, c.head_repeats)
        for doc in documents
        for piece in chunk_text(doc.text, c.max_chars, c.min_chars)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search-eval bench poem_vectors", description=__doc__)
    parser.add_argument("--count", type=int, default=300_000, help="poems, in the corpus's fixed order")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--flush", type=int, default=4096, help="vectors per written shard")
    args = parser.parse_args(argv)

    settings = load_settings()
    encoder = local_encoder(settings, ensure_built_model(settings))
    cache = VectorCache(DEFAULT_ROOT / encoder.model_id, encoder.dim)
    texts = passage_texts(list(poem_documents(args.count)), settings)
    todo = sorted({texts[i] for i in cache.missing(texts)}, key=len)
    logger.info("%d passages, %d cached, %d to encode", len(texts), len(texts) - len(todo), len(todo))
    started, done = time.perf_counter(), 0
    for start in range(0, len(todo), args.batch):
        batch = todo[start : start + args.batch]
        cache.add(batch, encoder.encode_passages_sync(batch))
        done += len(batch)
        if done % args.flush < args.batch or done == len(todo):
            cache.flush()
            rate = done / (time.perf_counter() - started)
            logger.info("%d / %d encoded, %.1f passages/s", done, len(todo), rate)
    cache.flush()
    return 0
