"""start_inline: a coroutine runs in the caller until it first waits, then in a task."""

from __future__ import annotations

import asyncio

import pytest

from eventpro.inline import start_inline


async def test_a_coroutine_that_never_waits_runs_to_the_end_at_once() -> None:
    done: list[str] = []

    async def no_wait() -> None:
        lock = asyncio.Lock()
        async with lock:  # an uncontended lock does not wait
            done.append("ran")

    assert start_inline(no_wait()) is None
    assert done == ["ran"]


async def test_a_coroutine_that_waits_is_continued_by_a_task() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> int:
        steps.append("before")
        value = await gate
        steps.append("after")
        return value + 1

    rest = start_inline(waits())
    assert rest is not None
    assert steps == ["before"]
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    gate.set_result(41)
    assert await asyncio.wait_for(task, 5) == 42
    assert steps == ["before", "after"]


async def test_a_coroutine_that_yields_to_the_loop_goes_on() -> None:
    async def yields() -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "done"

    rest = start_inline(yields())
    assert rest is not None
    assert await asyncio.wait_for(asyncio.ensure_future(rest), 5) == "done"


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    cleaned: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def waits_forever() -> None:
        try:
            await never
        finally:
            cleaned.append("finally")

    rest = start_inline(waits_forever())
    assert rest is not None
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]
    assert never.cancelled()


async def test_errors_propagate_before_and_after_the_first_wait() -> None:
    async def fails_at_once() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        start_inline(fails_at_once())

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    rest = start_inline(fails_later())
    assert rest is not None
    with pytest.raises(ValueError, match="later"):
        await asyncio.ensure_future(rest)


async def test_a_coroutine_may_catch_the_cancellation_and_return() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def shrugs() -> str:
        try:
            await never
        except asyncio.CancelledError:
            return "caught"
        return "not reached"

    rest = start_inline(shrugs())
    assert rest is not None
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "caught"
