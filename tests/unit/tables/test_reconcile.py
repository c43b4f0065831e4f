"""Recounting an event's counters from its seat claims after a crash left them half written."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from eventpro.domain import EventInventory, Hold
from eventpro.tables.reconcile import PendingPartitions, reconcile_partition
from eventpro.tables.state import TicketingState
from eventpro.topics import partition_for_key

PARTITIONS = 4


def _state() -> TicketingState:
    tables: list[dict[str, Any]] = [{}, {}, {}, {}]
    return TicketingState(*tables)


def _event(event_id: str, held: int = 0, sold: int = 0) -> EventInventory:
    return EventInventory(
        event_id=event_id,
        name=event_id,
        capacity=100,
        price_cents=100,
        max_per_user=10,
        held=held,
        sold=sold,
    )


def _claim(event_id: str, n: int, quantity: int, user: str, sold: bool = False) -> Hold:
    return Hold(
        reservation_id=f"{event_id}-res-{n}",
        request_id=f"req-{n}",
        event_id=event_id,
        user_id=user,
        quantity=quantity,
        amount_cents=100 * quantity,
        expires_at_ms=1_000,
        sold=sold,
    )


def _partition(event_id: str) -> int:
    return partition_for_key(event_id.encode(), PARTITIONS)


def _two_events_on_different_partitions() -> tuple[str, str]:
    names = [f"ev-{n}" for n in range(20)]
    first = names[0]
    other = next(n for n in names if _partition(n) != _partition(first))
    return first, other


def test_counters_a_crash_applied_twice_are_recounted(caplog: pytest.LogCaptureFixture) -> None:
    state = _state()
    ev, _ = _two_events_on_different_partitions()
    # The stored counters say 21 held / 9 sold; the claims hold 2 and sold 3.
    state.put_inventory(_event(ev, held=21, sold=9))
    state.put_hold(_claim(ev, 1, 2, "alice"))
    state.put_hold(_claim(ev, 2, 3, "bob", sold=True))
    state.put_user_tickets(ev, "alice", 7)
    state.put_user_tickets(ev, "carol", 4)  # no claim left at all
    with caplog.at_level(logging.WARNING, logger="eventpro.tables.reconcile"):
        corrections = reconcile_partition(state, _partition(ev), PARTITIONS)
    inventory = state.inventory(ev)
    assert inventory is not None and (inventory.held, inventory.sold) == (2, 3)
    assert state.user_tickets(ev, "alice") == 2
    assert state.user_tickets(ev, "bob") == 3
    assert state.user_tickets(ev, "carol") == 0 and f"{ev}/carol" not in state.user_tickets_table
    assert {(c.key, c.field, c.stored, c.counted) for c in corrections} == {
        (ev, "held", 21, 2),
        (ev, "sold", 9, 3),
        (f"{ev}/alice", "seats", 7, 2),
        (f"{ev}/bob", "seats", 0, 3),
        (f"{ev}/carol", "seats", 4, 0),
    }
    assert f"{ev} held was 21, its claims add up to 2" in caplog.text


def test_agreeing_counters_and_other_partitions_are_left_alone() -> None:
    state = _state()
    ev, other = _two_events_on_different_partitions()
    state.put_inventory(_event(ev, held=2))
    state.put_hold(_claim(ev, 1, 2, "alice"))
    state.put_user_tickets(ev, "alice", 2)
    state.put_inventory(_event(other, held=50))  # wrong, but not this partition's
    state.put_user_tickets(other, "dave", 3)
    before = dict(state.inventory_table), dict(state.user_tickets_table)
    assert reconcile_partition(state, _partition(ev), PARTITIONS) == []
    assert (dict(state.inventory_table), dict(state.user_tickets_table)) == before


def test_an_event_id_that_prefixes_another_keeps_the_others_user_counts() -> None:
    state = _state()
    names = [f"x{n}" for n in range(40)]
    short = next(n for n in names if _partition(n) != _partition(f"{n}/vip"))
    long = f"{short}/vip"
    state.put_inventory(_event(short))
    state.put_inventory(_event(long, held=1))
    state.put_hold(_claim(long, 1, 1, "erin"))
    state.put_user_tickets(long, "erin", 1)  # key "<short>/vip/erin" also starts "<short>/"
    assert reconcile_partition(state, _partition(short), PARTITIONS) == []
    assert state.user_tickets(long, "erin") == 1


def test_every_partition_is_pending_at_start_and_after_a_rebalance() -> None:
    pending = PendingPartitions(3)
    assert [pending.take(p) for p in (0, 0, 1, 2, 2)] == [True, False, True, True, False]
    pending.invalidate()
    assert pending.take(1) and not pending.take(1)
