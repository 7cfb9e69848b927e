"""Bulk ingest over real Milvus Lite: resume after an interruption, idempotent reruns, bad lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from retrieval.bulk_ingest import BulkProgress, IngestCheckpoint, bulk_ingest, checkpoint_path
from retrieval.engine import Engine
from retrieval.errors import InvalidDocument
from retrieval.settings import Settings, load_settings
from tests.conftest import open_test_engine, search

pytestmark = pytest.mark.integration

COLLECTION = "kb_chunks"


class Interrupted(Exception):
    """Stands for a kill between two batches."""


def _write(path: Path, paragraphs: list[str], n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            doc = {"id": f"p{i}", "title": f"段落{i}", "kind": "lore", "text": paragraphs[i]}
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return path


async def _run(
    settings: Settings, source: Path, *, stop_after: int | None = None, batch: int = 4
) -> tuple[Engine, int]:
    """Bulk-ingest `source`; `stop_after` batches raises Interrupted. Returns the open engine."""
    engine = await open_test_engine(settings)
    seen = 0

    def progress(_: BulkProgress) -> None:
        nonlocal seen
        seen += 1
        if stop_after is not None and seen >= stop_after:
            raise Interrupted

    report = await bulk_ingest(
        engine.kb,
        source,
        checkpoint=_checkpoint(settings, source),
        collection=COLLECTION,
        batch=batch,
        on_progress=progress,
    )
    return engine, report.resumed_documents


def _checkpoint(settings: Settings, source: Path) -> Path:
    return checkpoint_path(settings.data.dir / "collections", source, COLLECTION)


async def _snapshot(engine: Engine) -> tuple[object, ...]:
    """What a user could observe: rows with their BM25 bookkeeping, statistics, and rankings."""
    rows = sorted(
        [
            (s.chunk_id, s.doc_id, s.length, sorted(s.terms.items()))
            async for b in engine.kb.store.iterate_terms()
            for s in b
        ]
    )
    stats = engine.kb.stats
    hits = [
        [(h.id, round(h.score, 6)) for h in (await search(engine, q, top_k=5)).hits]
        for q in ("广茂铁路全长多少公里", "段落7", "历史")
    ]
    return rows, stats.n_docs, stats.total_len, stats.df, round(stats.reference_avgdl, 9), hits


async def test_an_interrupted_run_resumes_and_equals_a_straight_run(
    tmp_path: Path, cmrc_paragraphs: list[str]
) -> None:
    source = _write(tmp_path / "docs.jsonl", cmrc_paragraphs, 23)
    # Drift tolerance 0: stored BM25 weights always match the live average length, so the two
    # collections must agree to the last weight (with the default 5% they agree within it).
    exact = {"SEARCH_SPARSE_REWEIGHT_DRIFT": "0"}
    straight = load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path / "straight"), **exact})
    resumed = load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path / "resumed"), **exact})

    engine, _ = await _run(straight, source)
    expected = await _snapshot(engine)
    await engine.close()

    with pytest.raises(Interrupted):
        await _run(resumed, source, stop_after=2)
    saved = IngestCheckpoint.load(_checkpoint(resumed, source))
    assert saved is not None and (saved.documents, saved.line) == (8, 8)

    engine, skipped = await _run(resumed, source)
    try:
        assert skipped == 8
        assert not _checkpoint(resumed, source).exists()  # a finished file leaves no checkpoint
        assert await _snapshot(engine) == expected
    finally:
        await engine.close()


async def test_a_rerun_leaves_the_collection_as_it_was(tmp_path: Path, cmrc_paragraphs: list[str]) -> None:
    source = _write(tmp_path / "docs.jsonl", cmrc_paragraphs, 10)
    settings = load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path / "data")})
    engine, _ = await _run(settings, source, batch=3)
    first = await _snapshot(engine)
    await engine.close()

    engine, skipped = await _run(settings, source, batch=3)
    try:
        assert skipped == 0
        assert await _snapshot(engine) == first
        assert {s.doc_id async for b in engine.kb.store.iterate_terms() for s in b} == {
            f"p{i}" for i in range(10)
        }
    finally:
        await engine.close()


async def test_a_checkpoint_of_an_edited_file_is_not_trusted(
    tmp_path: Path, cmrc_paragraphs: list[str]
) -> None:
    source = _write(tmp_path / "docs.jsonl", cmrc_paragraphs, 12)
    settings = load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path / "data")})
    with pytest.raises(Interrupted):
        await _run(settings, source, stop_after=1)
    # The file changes under the checkpoint: the next run must read it from the start.
    _write(source, cmrc_paragraphs[1:], 12)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    engine, skipped = await _run(settings, source)
    try:
        assert skipped == 0
        ids = {s.doc_id async for b in engine.kb.store.iterate_terms() for s in b}
        assert ids == {f"p{i}" for i in range(12)}
        assert engine.kb.stats.n_docs == await engine.kb.store.count()  # statistics count chunks
    finally:
        await engine.close()


async def test_a_bad_line_is_named_and_the_batches_before_it_stay(
    tmp_path: Path, cmrc_paragraphs: list[str]
) -> None:
    source = _write(tmp_path / "docs.jsonl", cmrc_paragraphs, 9)
    lines = source.read_text(encoding="utf-8").splitlines()
    lines[6] = '{"id": "bad id!", "text": "内容"}'
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path / "data")})
    with pytest.raises(InvalidDocument, match=r"docs\.jsonl:7:"):
        await _run(settings, source, batch=3)
    engine = await open_test_engine(settings)
    try:
        # Lines 1-6 were two full batches before the bad one; the statistics agree with the store.
        ids = {s.doc_id async for b in engine.kb.store.iterate_terms() for s in b}
        assert ids == {f"p{i}" for i in range(6)}
        assert engine.kb.stats.n_docs == await engine.kb.store.count()
    finally:
        await engine.close()
