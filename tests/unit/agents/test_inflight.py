"""InFlight: bounded concurrency, order per key, a slow call does not hold the others."""

from __future__ import annotations

import asyncio

import pytest

from eventpro.agents.inflight import InFlight


async def test_at_most_limit_run_at_once() -> None:
    pool = InFlight(3)
    running = peak = 0
    release = asyncio.Event()

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    for i in range(3):
        await pool.submit(f"k{i}", work)
    fourth = asyncio.ensure_future(pool.submit("k3", work))
    await asyncio.sleep(0)
    assert not fourth.done() and len(pool) == 3
    release.set()
    await asyncio.wait_for(fourth, 1)
    await asyncio.wait_for(pool.drain(), 1)
    assert peak == 3 and len(pool) == 0


async def test_same_key_runs_in_order_other_keys_overtake() -> None:
    pool = InFlight(10)
    done: list[str] = []
    slow_gate = asyncio.Event()

    async def slow() -> None:
        await slow_gate.wait()
        done.append("a1")

    b_done = asyncio.Event()

    async def fast(label: str) -> None:
        done.append(label)
        if label == "b1":
            b_done.set()

    await pool.submit("a", slow)
    await pool.submit("a", lambda: fast("a2"))
    await pool.submit("b", lambda: fast("b1"))
    await asyncio.wait_for(b_done.wait(), 1)
    assert done == ["b1"]
    slow_gate.set()
    await asyncio.wait_for(pool.drain(), 1)
    assert done == ["b1", "a1", "a2"]


async def test_a_failing_handler_frees_its_slot_and_does_not_block_its_key() -> None:
    pool = InFlight(1)
    done: list[str] = []

    async def boom() -> None:
        raise RuntimeError("handler bug")

    async def ok() -> None:
        done.append("ok")

    await pool.submit("k", boom)
    await asyncio.wait_for(pool.submit("k", ok), 1)
    await asyncio.wait_for(pool.drain(), 1)
    assert done == ["ok"]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlight(0)
