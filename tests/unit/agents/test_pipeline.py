"""BatchFinisher: batches finished in order in their own task; a failure gives up the rest."""

from __future__ import annotations

import asyncio

import pytest

from eventpro.agents.pipeline import BatchFinisher


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.finished: list[int] = []
        self.given_up: list[int] = []
        self.fail_on = fail_on
        self.gate = asyncio.Event()
        self.gate.set()

    async def finish(self, batch: int) -> None:
        await self.gate.wait()
        if batch == self.fail_on:
            raise OSError(f"cannot write batch {batch}")
        self.finished.append(batch)

    def give_up(self, batch: int) -> None:
        self.given_up.append(batch)


async def test_batches_are_finished_in_submission_order_while_the_submitter_goes_on() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    finisher = BatchFinisher(recorder.finish, recorder.give_up, depth=2)
    for batch in (1, 2, 3):  # one in progress, two waiting: none of these submits blocks
        await asyncio.wait_for(finisher.submit(batch), timeout=1)
    assert finisher.pending == 3 and recorder.finished == []
    blocked = asyncio.ensure_future(finisher.submit(4))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # depth reached: the submitter waits
    recorder.gate.set()
    await asyncio.wait_for(blocked, timeout=1)
    await asyncio.wait_for(finisher.drained(), timeout=1)
    assert recorder.finished == [1, 2, 3, 4] and finisher.pending == 0
    await finisher.stop()


async def test_a_failure_gives_up_every_later_batch_and_the_next_submit_raises_it() -> None:
    recorder = Recorder(fail_on=2)
    recorder.gate.clear()
    finisher = BatchFinisher(recorder.finish, recorder.give_up, depth=3)
    for batch in (1, 2, 3):
        await finisher.submit(batch)
    recorder.gate.set()
    await asyncio.wait_for(finisher.drained(), timeout=1)
    assert recorder.finished == [1] and recorder.given_up == [2, 3]
    with pytest.raises(OSError, match="batch 2"):
        finisher.raise_if_failed()
    with pytest.raises(OSError, match="batch 2"):
        await finisher.submit(4)
    assert recorder.given_up == [2, 3, 4]
    await finisher.stop()
    finisher.raise_if_failed()  # a stopped finisher starts afresh


async def test_stop_gives_up_the_batch_in_progress_and_the_queued_ones() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    finisher = BatchFinisher(recorder.finish, recorder.give_up, depth=2)
    for batch in (1, 2, 3):
        await finisher.submit(batch)
    await asyncio.sleep(0)
    await asyncio.wait_for(finisher.stop(), timeout=1)
    assert recorder.finished == [] and sorted(recorder.given_up) == [1, 2, 3]
    assert finisher.pending == 0


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchFinisher(Recorder().finish, Recorder().give_up, depth=0)


async def test_a_cancelled_future_inside_finish_is_a_failure_not_the_end_of_the_task() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    broker_ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def finish(batch: int) -> None:
        if batch == 1:
            await broker_ack  # a producer stopping cancels the futures it still holds
        await recorder.finish(batch)

    finisher = BatchFinisher(finish, recorder.give_up, depth=2)
    for batch in (1, 2):
        await finisher.submit(batch)
    await asyncio.sleep(0)
    broker_ack.cancel()
    recorder.gate.set()
    await asyncio.wait_for(finisher.drained(), timeout=1)
    assert recorder.finished == [] and recorder.given_up == [1, 2]
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(finisher.submit(3), timeout=1)
    assert recorder.given_up == [1, 2, 3]
    await finisher.stop()


async def test_a_submit_waiting_for_room_raises_when_the_task_is_cancelled_from_outside() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    finisher = BatchFinisher(recorder.finish, recorder.give_up, depth=1)
    for batch in (1, 2):
        await finisher.submit(batch)
    blocked = asyncio.ensure_future(finisher.submit(3))
    await asyncio.sleep(0)
    assert not blocked.done()
    finisher._task.cancel()  # type: ignore[union-attr]  # as a shutdown cancelling every task
    with pytest.raises(RuntimeError, match="ended unexpectedly"):
        await asyncio.wait_for(blocked, timeout=1)
    assert sorted(recorder.given_up) == [1, 2, 3] and finisher.pending == 0
    await finisher.stop()
