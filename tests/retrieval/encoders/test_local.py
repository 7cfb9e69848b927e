"""The local ONNX encoder's query batching: shared runs, same vectors, failures reach every caller."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from retrieval.encoders.build import BuiltModel
from retrieval.encoders.local import OnnxEncoder

pytestmark = pytest.mark.integration

QUERIES = ["断剑客", "沈青崖的佩剑", "霜刃门在哪里", "谁是沈青崖的师父", "北境", "剑冢", "雪夜", "寒江"]


@pytest.fixture(scope="module")
def encoder(built_model: BuiltModel) -> OnnxEncoder:
    return OnnxEncoder(
        built_model.int8_path, built_model.tokenizer_path, model_id=built_model.model_id, max_batch=32
    )


async def test_a_lone_query_runs_alone(encoder: OnnxEncoder) -> None:
    before = encoder.batches_run
    (vector,) = await encoder.encode_queries(["断剑客"])
    assert encoder.batches_run == before + 1
    assert np.allclose(vector, encoder.encode_sync(["断剑客"])[0], atol=1e-5)


async def test_concurrent_queries_share_runs_and_get_their_own_vectors(encoder: OnnxEncoder) -> None:
    before = encoder.batches_run
    results = await asyncio.gather(*(encoder.encode_queries([q]) for q in QUERIES))
    runs = encoder.batches_run - before
    # The first query may run alone; every one that arrived meanwhile joins the next run.
    assert runs <= 2
    alone = encoder.encode_sync(QUERIES)
    for got, want in zip(results, alone, strict=True):
        assert np.allclose(got[0], want, atol=1e-4)


async def test_queries_arriving_during_a_run_are_answered(encoder: OnnxEncoder) -> None:
    first = asyncio.ensure_future(encoder.encode_queries(["剑冢"]))
    await asyncio.sleep(0)  # the first run is in flight
    later = await asyncio.gather(*(encoder.encode_queries([q]) for q in QUERIES[:4]))
    assert (await first).shape == (1, encoder.dim)
    assert [v.shape for v in later] == [(1, encoder.dim)] * 4


async def test_a_query_right_after_a_run_ends_is_answered(encoder: OnnxEncoder) -> None:
    # The caller resumes when its future is set, before the finished run's task has been
    # cleaned up: a query sent at that moment must start a run of its own, not wait for one
    # that already ended (it would wait forever, and the request with it).
    async def back_to_back() -> list[int]:
        shapes = []
        for first, second in itertools.pairwise(QUERIES):
            await encoder.encode_queries([first])
            shapes.append(len(await encoder.encode_queries([second])))  # in the same loop step
        return shapes

    assert await asyncio.wait_for(back_to_back(), timeout=60) == [1] * (len(QUERIES) - 1)


async def test_a_failed_run_fails_every_query_that_shared_it(built_model: BuiltModel) -> None:
    broken = OnnxEncoder(built_model.int8_path, built_model.tokenizer_path, model_id=built_model.model_id)

    def explode(_: object) -> None:
        raise RuntimeError("onnx run failed")

    broken._run = explode  # type: ignore[assignment,method-assign]
    outcomes = await asyncio.gather(
        *(broken.encode_queries([q]) for q in QUERIES[:3]), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    await broken.close()
