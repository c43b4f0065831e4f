"""take_batches: batch sizes and waits follow the backlog, order and acknowledgements kept."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from support.waiting import wait_for

from eventpro.agents.batches import consumer_lag, take_batches

_app_ids = itertools.count()


class Recorder:
    """An agent over a fresh app that records each batch ``take_batches`` yields."""

    def __init__(self, max_: int, within: float, behind_within: float, lag: Any) -> None:
        self.batches: list[list[int]] = []
        self.acked_after_batch: list[bool] = []
        app = faust.App(
            f"take-batches-{next(_app_ids)}", broker="kafka://127.0.0.1:1", store="memory://"
        )
        app.loop = asyncio.get_running_loop()
        app.finalize()
        app.flow_control.resume()

        async def record(stream: faust.StreamT[int]) -> AsyncIterator[int]:
            previous: list[Any] = []
            async for events in take_batches(
                stream, max_, within, behind_within=behind_within, lag=lag
            ):
                self.acked_after_batch.append(all(e.message.acked for e in previous))
                previous = list(events)
                self.batches.append([e.value for e in events])
                yield len(events)

        self.agent = app.agent(name="record")(record)

    async def wait_for_records(self, count: int) -> None:
        async def recorded() -> bool:
            return sum(len(b) for b in self.batches) >= count

        await wait_for(recorded, 10.0, f"{count} records in batches")


def lag_of(waiting: int) -> Callable[[TP, int], int]:
    return lambda tp, offset: waiting


async def test_an_idle_stream_yields_what_came_within_the_short_wait() -> None:
    recorder = Recorder(max_=100, within=0.001, behind_within=30.0, lag=lag_of(0))
    async with recorder.agent.test_context() as agent:
        await agent.put(1, wait=False)
        await recorder.wait_for_records(1)
        await agent.put(2, wait=False)
        await agent.put(3, wait=False)
        await recorder.wait_for_records(3)
    assert recorder.batches[0] == [1]
    assert [v for batch in recorder.batches for v in batch] == [1, 2, 3]


async def test_batches_never_exceed_max_and_keep_order() -> None:
    recorder = Recorder(max_=4, within=0.05, behind_within=0.05, lag=lag_of(0))
    async with recorder.agent.test_context() as agent:
        for value in range(10):
            await agent.put(value, wait=False)
        await recorder.wait_for_records(10)
    assert max(len(batch) for batch in recorder.batches) <= 4
    assert [v for batch in recorder.batches for v in batch] == list(range(10))


async def test_events_are_acknowledged_once_their_batch_is_handled() -> None:
    recorder = Recorder(max_=2, within=0.001, behind_within=0.001, lag=lag_of(0))
    async with recorder.agent.test_context() as agent:
        for value in range(6):
            await agent.put(value, wait=False)
        await recorder.wait_for_records(6)
    assert len(recorder.acked_after_batch) >= 3
    assert all(recorder.acked_after_batch)


async def test_when_a_full_batch_waits_in_the_partitions_a_batch_lingers_to_fill() -> None:
    waiting = {"records": 1000}
    recorder = Recorder(
        max_=3, within=0.001, behind_within=30.0, lag=lambda tp, offset: waiting["records"]
    )
    async with recorder.agent.test_context() as agent:
        await agent.put(1, wait=False)
        await agent.put(2, wait=False)
        with pytest.raises(TimeoutError):  # behind: the batch waits for a third record
            await asyncio.wait_for(recorder.wait_for_records(1), timeout=0.3)
        await agent.put(3, wait=False)
        await recorder.wait_for_records(3)
        waiting["records"] = 0  # caught up: the short wait again
        await agent.put(4, wait=False)
        await recorder.wait_for_records(4)
    assert recorder.batches == [[1, 2, 3], [4]]


async def test_a_partition_whose_lag_cannot_be_read_counts_as_caught_up() -> None:
    def revoked(tp: TP, offset: int) -> int:
        raise AssertionError("partition is not assigned")

    recorder = Recorder(max_=3, within=0.001, behind_within=30.0, lag=revoked)
    async with recorder.agent.test_context() as agent:
        await agent.put(1, wait=False)
        await recorder.wait_for_records(1)
        await agent.put(2, wait=False)
        await recorder.wait_for_records(2)
    assert recorder.batches == [[1], [2]]


@pytest.mark.parametrize(
    ("max_", "within", "behind_within"), [(0, 0.01, 0.01), (1, -1.0, 0.01), (1, 0.01, -1.0)]
)
async def test_bad_arguments_are_refused(max_: int, within: float, behind_within: float) -> None:
    recorder = Recorder(max_=1, within=0.01, behind_within=0.01, lag=lag_of(0))
    async with recorder.agent.test_context():
        stream = recorder.agent.stream()
        with pytest.raises(ValueError):
            await anext(
                aiter(
                    take_batches(stream, max_, within, behind_within=behind_within, lag=lag_of(0))
                )
            )


def test_consumer_lag_counts_the_records_after_an_offset_up_to_the_high_watermark() -> None:
    highwaters = {TP("requests", 0): 100, TP("requests", 1): 7}
    app = SimpleNamespace(consumer=SimpleNamespace(highwater=highwaters.__getitem__))
    lag = consumer_lag(app)  # type: ignore[arg-type]
    assert lag(TP("requests", 0), 89) == 10  # offsets 90..99 wait
    assert lag(TP("requests", 1), 6) == 0
