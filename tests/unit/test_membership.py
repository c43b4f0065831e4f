"""The group-membership lease: when it lapses, and what a batch waiting on it does."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from eventpro.membership import LEASE_SHARE, GroupLease, hold_while_in_doubt


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FlowControl:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


def _lease(session_timeout_s: float = 10.0) -> tuple[GroupLease, Clock]:
    clock = Clock()
    lease = GroupLease(clock)
    lease.start(session_timeout_s)
    return lease, clock


def _app(generation: int = 3) -> Any:
    return SimpleNamespace(consumer_generation_id=generation, flow_control=FlowControl())


def test_a_lease_never_confirmed_does_not_lapse() -> None:
    lease, clock = _lease()
    clock.now += 1_000
    assert not lease.lapsed()
    assert lease.unconfirmed_for() == 0.0


def test_a_confirmation_holds_for_a_share_of_the_session_timeout() -> None:
    lease, clock = _lease(session_timeout_s=10.0)
    assert lease.duration_s == 10.0 * LEASE_SHARE < 10.0
    lease.confirm(lease.now())
    clock.now += lease.duration_s
    assert not lease.lapsed()
    clock.now += 0.01
    assert lease.lapsed()
    assert lease.unconfirmed_for() == pytest.approx(lease.duration_s + 0.01)
    lease.confirm(clock.now - 1.0)  # a heartbeat sent a second ago was accepted
    assert not lease.lapsed()


def test_an_older_confirmation_does_not_move_the_lease_back() -> None:
    lease, clock = _lease()
    lease.confirm(100.0)
    lease.confirm(95.0)  # a slow heartbeat answered after a later one
    clock.now = 100.0 + lease.duration_s
    assert not lease.lapsed()


def test_a_session_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        GroupLease().start(0)


async def test_a_batch_goes_on_at_once_while_the_lease_holds() -> None:
    lease, _ = _lease()
    lease.confirm(lease.now())
    assert await hold_while_in_doubt(_app(), ["record"], "agent", lease)  # type: ignore[list-item]


async def test_a_held_batch_goes_on_when_a_heartbeat_is_accepted_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lease, clock = _lease()
    lease.confirm(lease.now())
    clock.now += 60
    app = _app()
    with caplog.at_level(logging.INFO, logger="eventpro.membership"):
        held = asyncio.create_task(hold_while_in_doubt(app, ["r1", "r2"], "agent", lease))  # type: ignore[list-item]
        await asyncio.sleep(0.2)
        assert not held.done()  # waits while nobody confirmed the membership
        lease.confirm(clock.now)
        assert await asyncio.wait_for(held, 5) is True
    assert "agent holds a batch of 2 record(s): no heartbeat accepted for 60.0 s" in caplog.text
    assert "goes on" in caplog.text


async def test_a_held_batch_is_given_up_when_its_partitions_are_reassigned() -> None:
    lease, clock = _lease()
    lease.confirm(lease.now())
    clock.now += 60
    app = _app(generation=3)
    held = asyncio.create_task(hold_while_in_doubt(app, ["r1"], "agent", lease))  # type: ignore[list-item]
    await asyncio.sleep(0)  # the hold starts: it noted generation 3
    assert not held.done()
    app.consumer_generation_id = 4  # rejoined: the assignment confirms the lease too
    lease.confirm(clock.now)
    assert await asyncio.wait_for(held, 5) is False


async def test_a_held_batch_is_given_up_when_a_rebalance_suspends_the_streams() -> None:
    lease, clock = _lease()
    lease.confirm(lease.now())
    clock.now += 60
    app = _app()
    held = asyncio.create_task(hold_while_in_doubt(app, ["r1"], "agent", lease))  # type: ignore[list-item]
    await asyncio.sleep(0)
    assert not held.done()
    app.flow_control.active = False
    assert await asyncio.wait_for(held, 5) is False
