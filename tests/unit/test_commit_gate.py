"""The commit gate: an exactly-once commit waits for records in progress and holds new ones."""

from __future__ import annotations

import asyncio

import pytest

from eventpro.commit_gate import CommitGate, GateTimeout


async def test_a_commit_waits_for_the_record_in_progress_and_holds_the_next() -> None:
    gate = CommitGate()
    order: list[str] = []
    finish_first = asyncio.Event()

    async def record(name: str, release: asyncio.Event | None = None) -> None:
        async with gate.processing():
            order.append(f"{name} start")
            if release is not None:
                await release.wait()
            order.append(f"{name} end")

    first = asyncio.ensure_future(record("r1", finish_first))
    await asyncio.sleep(0)  # let r1 enter the gate
    assert gate.active == 1

    async def commit() -> None:
        async with gate.closed(5.0):
            order.append("commit")

    committing = asyncio.ensure_future(commit())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(record("r2"))
    await asyncio.sleep(0)
    assert order == ["r1 start"], "the commit or the next record ran inside a record"
    finish_first.set()
    await asyncio.wait_for(asyncio.gather(first, committing, second), timeout=5)
    assert order == ["r1 start", "r1 end", "commit", "r2 start", "r2 end"]


async def test_a_commit_gives_up_when_a_record_never_finishes() -> None:
    gate = CommitGate()
    stuck = asyncio.Event()

    async def record() -> None:
        async with gate.processing():
            await stuck.wait()

    task = asyncio.ensure_future(record())
    await asyncio.sleep(0)
    with pytest.raises(GateTimeout, match="1 record"):
        async with gate.closed(0.2):
            pytest.fail("committed while a record was in progress")
    async with gate.processing():  # the gate is open again after the failed commit
        pass
    stuck.set()
    await asyncio.wait_for(task, timeout=5)
    assert gate.active == 0


async def test_an_idle_gate_commits_at_once() -> None:
    gate = CommitGate()
    async with gate.closed(0.01):
        assert gate.active == 0
