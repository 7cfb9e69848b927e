"""Bulk-ingest throughput, end to end, with the real INT8 model into a fresh Milvus Lite file.

Run: ``uv run search-eval bench ingest [--chunks 2000] [--chars 190] [--runs 3]``

Writes ``--chunks`` synthetic documents of about ``--chars`` characters (``eval.synthetic``, one
chunk each) to a JSON Lines file, then per run opens a new data folder (a copy of the built
model, an empty Milvus Lite file) and times ``retrieval.bulk_ingest.bulk_ingest`` over the file:
reading, chunking, embedding, jieba + BM25, upserts and the final statistics snapshot. Opening
the pipeline (model load, jieba dictionary) is timed apart. For context it also times, on the
same indexed texts, the encoder alone (``encode_sync``, both cores) and jieba alone: the
ceiling each stage would allow if nothing else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from eval.synthetic import SyntheticCorpus, write_jsonl
from retrieval.bulk_ingest import bulk_ingest, checkpoint_path
from retrieval.documents import read_jsonl
from retrieval.encoders.build import ensure_model
from retrieval.encoders.local import OnnxEncoder
from retrieval.encoders.registry import DEFAULT_MODEL_ID
from retrieval.engine import build_tokenizer, configured_encoder, open_knowledge_base
from retrieval.knowledge_base import index_text
from retrieval.settings import PROJECT_ROOT, load_settings


async def _one_run(source: Path, model_dir: Path, work: Path, batch: int) -> tuple[float, float, int]:
    """(seconds to open the knowledge base, seconds to ingest, chunks) into a new data folder."""
    shutil.copytree(model_dir, work / "models" / model_dir.name)
    settings = load_settings(environ={**os.environ, "SEARCH_DATA_DIR": str(work)})
    t0 = time.perf_counter()
    kb = await open_knowledge_base(settings, await configured_encoder(settings))
    opened = time.perf_counter() - t0
    try:
        report = await bulk_ingest(
            kb,
            source,
            checkpoint=checkpoint_path(work / "collections", source, "bench"),
            collection="bench",
            batch=batch,
        )
    finally:
        await kb.close()
    return opened, report.elapsed_s, report.chunks


def main(argv: Sequence[str] | None = None) -> None:
    """Generate the corpus, run the ingest several times, print chunks/s."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--chars", type=int, default=190)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="documents per batch")
    parser.add_argument("--model-dir", type=Path, default=PROJECT_ROOT / "data" / "models" / DEFAULT_MODEL_ID)
    args = parser.parse_args(argv)

    model = ensure_model(args.model_dir)
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp_s:
        tmp = Path(tmp_s)
        source = tmp / "docs.jsonl"
        corpus = SyntheticCorpus(seed=3, target_chars=args.chars)
        write_jsonl((corpus.document(i) for i in range(args.chunks)), source)
        docs = list(read_jsonl(source))
        repeats = settings.chunking.head_repeats
        texts = [index_text(d.title, d.text, d.aliases, repeats) for d in docs]

        # Stage ceilings on the same texts (each alone on the machine).
        encoder = OnnxEncoder(
            model.int8_path, model.tokenizer_path, model_id=model.model_id, max_length=model.max_length
        )
        t0 = time.perf_counter()
        encoder.encode_sync(texts)
        encode_s = time.perf_counter() - t0
        tokenizer = build_tokenizer(settings)
        t0 = time.perf_counter()
        for t in texts:
            tokenizer.tokenize(t)
        jieba_s = time.perf_counter() - t0
        asyncio.run(encoder.close())

        rows: list[tuple[float, float, int]] = []
        for r in range(args.runs):
            rows.append(asyncio.run(_one_run(source, model.out_dir, tmp / f"run{r}", args.batch)))
            shutil.rmtree(tmp / f"run{r}", ignore_errors=True)

    rates = [chunks / seconds for _, seconds, chunks in rows]
    load1, load5, _ = os.getloadavg()
    doc_chars = statistics.mean(len(d.text) for d in docs)
    print(
        f"{len(docs)} documents, text {doc_chars:.0f} characters on average, indexed text "
        f"{statistics.mean(map(len, texts)):.0f} (title and aliases twice, then the text); batch {args.batch}"
    )
    print(f"load average at end {load1:.2f} / {load5:.2f}")
    print(
        f"stage ceilings: encoder alone {len(texts) / encode_s:.0f} chunks/s, "
        f"jieba alone {len(texts) / jieba_s:.0f} chunks/s"
    )
    for i, (opened, seconds, chunks) in enumerate(rows):
        rate = chunks / seconds
        print(f"run {i + 1}: open {opened:.1f} s, {chunks} chunks in {seconds:.1f} s = {rate:.0f} chunks/s")
    print(
        f"end to end: median {statistics.median(rates):.0f} chunks/s "
        f"(min {min(rates):.0f}, max {max(rates):.0f}) over {len(rates)} runs"
    )


if __name__ == "__main__":
    main()
