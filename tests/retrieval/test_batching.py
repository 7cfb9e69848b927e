"""Micro-batching: who shares a run, in what order results come back, failures and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from retrieval.batching import MicroBatcher


class Doubler:
    """A run that doubles each item and records the batches it was given."""

    def __init__(self, gate: asyncio.Event | None = None, fail: bool = False):
        self.batches: list[list[int]] = []
        self.gate = gate
        self.fail = fail

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("engine down")
        return [2 * i for i in items]


async def test_a_lone_call_runs_at_once() -> None:
    run = Doubler()
    batcher = MicroBatcher(run)
    assert await batcher.submit([3]) == [6]
    assert run.batches == [[3]] and batcher.runs == 1 and batcher.idle


async def test_calls_queued_behind_a_run_share_the_next_and_get_their_own_results() -> None:
    gate = asyncio.Event()
    run = Doubler(gate)
    batcher = MicroBatcher(run)
    first = asyncio.ensure_future(batcher.submit([1]))
    await asyncio.sleep(0.01)  # the first run is in flight, held at the gate
    later = [asyncio.ensure_future(batcher.submit([i, i + 100])) for i in range(2, 6)]
    await asyncio.sleep(0.01)
    assert run.batches == [[1]]  # nobody else ran meanwhile
    gate.set()
    assert await first == [2]
    assert await asyncio.gather(*later) == [[4, 204], [6, 206], [8, 208], [10, 210]]
    assert run.batches == [[1], [2, 102, 3, 103, 4, 104, 5, 105]]
    assert batcher.idle


async def test_a_full_queue_goes_without_waiting_for_the_run_in_flight() -> None:
    gate = asyncio.Event()
    run = Doubler(gate)
    batcher = MicroBatcher(run, max_batch=2)
    calls = [asyncio.ensure_future(batcher.submit([i])) for i in range(5)]
    await asyncio.sleep(0.01)
    # [0, 1] filled a batch at once; [2, 3] filled another behind it; 4 waits for a run to end.
    assert run.batches == [[0, 1], [2, 3]]
    gate.set()
    assert await asyncio.gather(*calls) == [[0], [2], [4], [6], [8]]
    assert run.batches[-1] == [4]


async def test_a_failed_run_fails_every_call_that_shared_it_and_the_next_run_works() -> None:
    gate = asyncio.Event()
    run = Doubler(gate, fail=True)
    batcher = MicroBatcher(run)
    calls = [asyncio.ensure_future(batcher.submit([i])) for i in range(3)]
    await asyncio.sleep(0.01)
    gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    run.fail = False
    assert await batcher.submit([7]) == [14]


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    gate = asyncio.Event()
    run = Doubler(gate)
    batcher = MicroBatcher(run)
    first = asyncio.ensure_future(batcher.submit([1]))
    await asyncio.sleep(0.01)
    gone, kept = asyncio.ensure_future(batcher.submit([2])), asyncio.ensure_future(batcher.submit([3]))
    await asyncio.sleep(0)
    gone.cancel()
    gate.set()
    assert await first == [2] and await kept == [6]
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_run_that_answers_the_wrong_number_of_items_is_an_error() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        await asyncio.gather(*(MicroBatcher(short).submit([1, 2, 3]) for _ in range(1)))


async def test_a_window_gathers_calls_that_arrive_within_it() -> None:
    run = Doubler()
    batcher = MicroBatcher(run, window_s=0.05)
    first = asyncio.ensure_future(batcher.submit([1]))
    await asyncio.sleep(0.005)
    second = asyncio.ensure_future(batcher.submit([2]))
    assert (await first, await second) == ([2], [4])
    assert run.batches == [[1, 2]]


async def test_close_runs_what_is_queued() -> None:
    run = Doubler()
    batcher = MicroBatcher(run, window_s=10.0)
    queued = asyncio.ensure_future(batcher.submit([5]))
    await asyncio.sleep(0)
    await batcher.close()
    assert await queued == [10]
