"""Memory a Milvus collection of this schema needs per million chunks, with the arithmetic shown.

    uv run search-eval bench memory_estimate --sample 3000 --chunks 1000000

The per-chunk inputs that vary with the corpus (sparse non-zeros, text, JSON term counts,
metadata) are measured on a sample of the synthetic corpus (`eval.synthetic`) through the real
indexing path (`index_text`, jieba with the lexicon, BM25 bookkeeping); the fixed ones come from
the schema (512 float32) and the index parameters (HNSW M=32). The output is a Markdown table;
README "Scale" and `eval/reports/scale/` quote it beside the Milvus Lite memory measured by
`eval.bench.scale`.

Model of each part (what a Milvus 2.4/2.5 query node holds for a loaded, indexed segment):
- dense vectors: dim x 4 bytes, kept inside the HNSW index (no separate raw copy once indexed);
- HNSW graph (hnswlib layout in knowhere): layer 0 holds 2M neighbour ids of 4 bytes plus a
  4-byte count; a node reaches layer l >= 1 with probability M^-l, so upper layers add
  (M x 4 + 4) / (M - 1) bytes on average; plus an 8-byte label and about 8 bytes of per-node
  bookkeeping;
- sparse vectors: the raw rows (4-byte term id + 4-byte float per non-zero) and the inverted
  index's postings (4-byte row id + 4-byte float per non-zero), so 16 bytes per non-zero;
- scalar fields, loaded in memory unless memory-mapped: VARCHAR as UTF-8 bytes plus an 8-byte
  offset, JSON as its serialised bytes plus an offset, INT32 4 bytes; the primary key twice
  (field and primary-key index).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from eval.synthetic import SyntheticCorpus
from retrieval.engine import build_tokenizer
from retrieval.knowledge_base import index_text
from retrieval.settings import load_settings
from retrieval.sparse.bm25 import TermCounts

HNSW_M = 32


@dataclass(frozen=True)
class ChunkShape:
    """Average stored sizes of one chunk, measured on a sample."""

    sparse_nnz: float
    text_bytes: float
    title_bytes: float
    id_bytes: float
    doc_id_bytes: float
    kind_bytes: float
    metadata_bytes: float
    tf_json_bytes: float


def measure_shape(sample: int, seed: int = 7) -> ChunkShape:
    """Average sizes over `sample` synthetic chunks, indexed as the pipeline indexes them."""
    settings = load_settings(environ=dict(os.environ))
    tokenizer = build_tokenizer(settings)
    repeats = settings.chunking.head_repeats
    rows: list[dict[str, float]] = []
    vocab: dict[str, int] = {}
    for doc in SyntheticCorpus(seed=seed).documents(sample):
        counts = TermCounts.from_tokens(
            tokenizer.tokenize(index_text(doc.title, doc.text, doc.aliases, repeats))
        )
        for term in counts.tf:
            vocab.setdefault(term, len(vocab))
        # The store keeps term -> [term id, count] (Bm25Statistics.counts_json).
        tf_json = {term: [vocab[term], n] for term, n in counts.tf.items()}
        rows.append(
            {
                "sparse_nnz": len(counts.tf),
                "text_bytes": len(doc.text.encode()),
                "title_bytes": len(doc.title.encode()),
                "id_bytes": len(f"{doc.id}#0".encode()),
                "doc_id_bytes": len(doc.id.encode()),
                "kind_bytes": len(doc.kind.encode()),
                "metadata_bytes": len(json.dumps(doc.metadata, ensure_ascii=False).encode()),
                "tf_json_bytes": len(json.dumps(tf_json, ensure_ascii=False, separators=(",", ":")).encode()),
            }
        )
    return ChunkShape(**{k: statistics.fmean(r[k] for r in rows) for k in rows[0]})


def per_chunk_bytes(shape: ChunkShape, dim: int = 512, m: int = HNSW_M) -> dict[str, float]:
    """Bytes per chunk for each part of a loaded collection on a Milvus server (HNSW)."""
    offset = 8
    return {
        "dense vectors (float32)": dim * 4,
        "HNSW graph": (2 * m * 4 + 4) + (m * 4 + 4) / (m - 1) + 8 + 8,
        "sparse rows + inverted index": shape.sparse_nnz * 16,
        "text": shape.text_bytes + offset,
        "tf (JSON term counts)": shape.tf_json_bytes + offset,
        "other scalars (id x2, doc_id, title, kind, metadata, ints)": 2 * (shape.id_bytes + offset)
        + shape.doc_id_bytes
        + shape.title_bytes
        + shape.kind_bytes
        + shape.metadata_bytes
        + 4 * offset
        + 2 * 4,
    }


def markdown(shape: ChunkShape, chunks: int, dim: int = 512) -> str:
    """The arithmetic as a table: bytes per chunk and GiB for `chunks` chunks."""
    parts = per_chunk_bytes(shape, dim)
    gib = 2**30
    lines = [
        f"Measured on the synthetic corpus: {shape.sparse_nnz:.1f} sparse non-zeros, "
        f"{shape.text_bytes:.0f} bytes of text, {shape.tf_json_bytes:.0f} bytes of JSON term counts, "
        f"{shape.metadata_bytes:.0f} bytes of metadata per chunk.",
        "",
        f"| part | arithmetic | bytes per chunk | GiB per {chunks:,} chunks |",
        "| --- | --- | --- | --- |",
    ]
    arithmetic = {
        "dense vectors (float32)": f"{dim} x 4",
        "HNSW graph": f"(2x{HNSW_M}x4+4) + ({HNSW_M}x4+4)/{HNSW_M - 1} + 8 + 8",
        "sparse rows + inverted index": f"{shape.sparse_nnz:.1f} x (4+4) x 2",
        "text": f"{shape.text_bytes:.0f} + 8",
        "tf (JSON term counts)": f"{shape.tf_json_bytes:.0f} + 8",
        "other scalars (id x2, doc_id, title, kind, metadata, ints)": "measured sizes + offsets",
    }
    for name, size in parts.items():
        lines.append(f"| {name} | {arithmetic[name]} | {size:,.0f} | {size * chunks / gib:.2f} |")
    total = sum(parts.values())
    lines.append(f"| **total** | | **{total:,.0f}** | **{total * chunks / gib:.2f}** |")
    in_index = parts["dense vectors (float32)"] + parts["HNSW graph"] + parts["sparse rows + inverted index"]
    lines += [
        "",
        f"Indexes alone (dense + HNSW + sparse): {in_index * chunks / gib:.2f} GiB; "
        f"with `text` and `tf` memory-mapped (`mmap.enabled`), the query nodes keep about "
        f"{(total - parts['text'] - parts['tf (JSON term counts)']) * chunks / gib:.2f} GiB resident.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Print the estimate."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sample", type=int, default=3000)
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args(argv)
    print(markdown(measure_shape(args.sample), args.chunks, args.dim))


if __name__ == "__main__":
    main()
