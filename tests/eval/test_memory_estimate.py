"""The memory estimate's arithmetic, checked against values worked out by hand."""

from __future__ import annotations

import pytest

from eval.bench.memory_estimate import ChunkShape, markdown, per_chunk_bytes

pytestmark = pytest.mark.unit

SHAPE = ChunkShape(
    sparse_nnz=100.0,
    text_bytes=600.0,
    title_bytes=9.0,
    id_bytes=14.0,
    doc_id_bytes=12.0,
    kind_bytes=5.0,
    metadata_bytes=70.0,
    tf_json_bytes=1500.0,
)


def test_per_chunk_bytes_by_hand() -> None:
    parts = per_chunk_bytes(SHAPE, dim=512, m=32)
    assert parts["dense vectors (float32)"] == 2048
    # Layer 0: 64 ids x 4 + 4; upper layers: 132 / 31; label and bookkeeping: 16.
    assert parts["HNSW graph"] == pytest.approx(260 + 132 / 31 + 16)
    assert parts["sparse rows + inverted index"] == 1600
    assert parts["text"] == 608
    assert parts["tf (JSON term counts)"] == 1508
    # id twice (14 + 8 each), doc_id 12, title 9, kind 5, metadata 70, 4 offsets, 2 INT32.
    assert (
        parts["other scalars (id x2, doc_id, title, kind, metadata, ints)"] == 44 + 12 + 9 + 5 + 70 + 32 + 8
    )


def test_markdown_total_per_million() -> None:
    text = markdown(SHAPE, 1_000_000)
    total = sum(per_chunk_bytes(SHAPE).values())
    assert f"**{total:,.0f}**" in text
    assert f"**{total * 1_000_000 / 2**30:.2f}**" in text
