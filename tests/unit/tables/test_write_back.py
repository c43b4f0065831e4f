"""The write-back overlay: reads see the batch's writes, one table write per key, deletes,
each key written in its own record's context, and the same decisions as per-record tables."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventpro.agents.processing import Coordinates, Outgoing
from eventpro.agents.saga import SagaInventoryProcessor
from eventpro.schemas import (
    Envelope,
    EventCreated,
    HoldExpiryTick,
    PaymentCaptured,
    PaymentDeclined,
    SeatsReserved,
    TicketRequested,
)
from eventpro.tables.batching import BatchCursor, WriteBackState, WriteBackTable
from eventpro.tables.expiry import HoldExpiryIndex
from eventpro.tables.state import TicketingState
from eventpro.topics import partition_for_key

PARTITIONS = 4


@dataclass
class Context:
    """Stands in for Faust's current event: the partition of the record being handled."""

    partition: int | None = None

    def activate(self, source: int | None) -> None:
        self.partition = source


@dataclass
class FakeTable(MutableMapping[str, Any]):
    """A table that logs every write/delete with the partition current at that moment."""

    context: Context
    data: dict[str, Any] = field(default_factory=dict)
    log: list[tuple[str, str, int | None]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.log.append(("set", key, self.context.partition))
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.log.append(("del", key, self.context.partition))
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _overlay(initial: dict[str, Any] | None = None) -> tuple[WriteBackTable[Any], FakeTable]:
    context = Context()
    backing = FakeTable(context, dict(initial or {}))
    cursor: BatchCursor[int] = BatchCursor(context.activate)
    return WriteBackTable(backing, cursor), backing


def test_reads_see_the_batch_writes_and_fall_through_to_the_table() -> None:
    table, backing = _overlay({"a": 1, "b": 2})
    table._cursor.enter(0)
    table["a"] = 10
    table["c"] = 3
    assert (table["a"], table.get("b"), table.get("c"), table.get("zz", -1)) == (10, 2, 3, -1)
    assert "c" in table and "zz" not in table
    assert dict(table.items()) == {"a": 10, "b": 2, "c": 3}
    assert sorted(table.values()) == [2, 3, 10] and len(table) == 3
    assert backing.log == [] and backing.data == {"a": 1, "b": 2}


def test_flush_writes_each_key_once_with_its_last_value() -> None:
    table, backing = _overlay({"inv": 0})
    table._cursor.enter(1)
    for count in range(1, 6):
        table["inv"] = count
    table["other"] = 7
    assert table.dirty == 2
    assert table.flush() == 2
    assert backing.data == {"inv": 5, "other": 7}
    assert sorted(backing.log) == [("set", "inv", 1), ("set", "other", 1)]
    assert table.dirty == 0
    assert table.flush() == 0


def test_deletes_stay_deletes_and_a_batch_local_key_never_reaches_the_table() -> None:
    table, backing = _overlay({"old": 1})
    table._cursor.enter(2)
    del table["old"]
    assert "old" not in table and table.get("old") is None
    with pytest.raises(KeyError):
        _ = table["old"]
    with pytest.raises(KeyError):
        del table["old"]
    table["temp"] = 5
    del table["temp"]
    table["back"] = 1
    del table["back"]
    table["back"] = 2
    assert table.flush() == 2
    assert backing.data == {"back": 2}
    assert sorted(backing.log) == [("del", "old", 2), ("set", "back", 2)]


def test_none_is_refused_so_a_delete_is_explicit() -> None:
    table, _ = _overlay()
    with pytest.raises(ValueError, match="delete the key"):
        table["k"] = None


def test_each_key_is_written_in_the_context_of_its_own_record() -> None:
    """The take_events pitfall: writes must not all land on the last record's partition."""
    context = Context()
    backing = FakeTable(context)
    cursor: BatchCursor[int] = BatchCursor(context.activate)
    table: WriteBackTable[Any] = WriteBackTable(backing, cursor)
    for partition, key in [(0, "p0-a"), (3, "p3-a"), (1, "p1-a"), (0, "p0-b"), (3, "p3-a")]:
        cursor.enter(partition)
        table[key] = partition
    cursor.enter(2)  # the batch's last record is on yet another partition
    table.flush()
    assert sorted(backing.log) == [
        ("set", "p0-a", 0),
        ("set", "p0-b", 0),
        ("set", "p1-a", 1),
        ("set", "p3-a", 3),
    ]


def test_discard_forgets_the_batch() -> None:
    table, backing = _overlay({"a": 1})
    table._cursor.enter(0)
    table["a"] = 2
    del table["a"]
    table.discard()
    assert table["a"] == 1 and table.flush() == 0 and backing.log == []


class FailingTable(FakeTable):
    """Refuses every write (a store or producer error during the flush)."""

    def __setitem__(self, key: str, value: Any) -> None:
        raise OSError(f"cannot write {key}")


def test_a_failed_flush_drops_the_rest_of_the_batch_and_leaves_no_record_current() -> None:
    context = Context()
    good, bad = FakeTable(context), FailingTable(context)
    state = WriteBackState(TicketingState(good, bad, bad, bad), context.activate)
    state.enter(1)
    state.state.inventory_table["i"] = b"y"
    state.state.statuses_table["s"] = b"x"
    with pytest.raises(OSError, match="cannot write"):
        state.flush()
    assert good.data == {"i": b"y"}  # inventory is flushed first, statuses last
    assert state.dirty == 0 and context.partition is None
    assert state.flush() == 0


def test_a_sealed_batch_writes_claims_then_records_then_removals() -> None:
    """A status may only reach the changelog after the claims it counts, and a released
    claim may only leave after the status of its release (the agent waits for the broker
    between the sets)."""
    context = Context()
    inventory, users, holds, statuses = (FakeTable(context) for _ in range(4))
    holds.data["old-hold"] = b"h0"
    state = WriteBackState(TicketingState(inventory, holds, users, statuses), context.activate)
    state.enter(2)
    state.state.holds_table["new-hold"] = b"h1"
    del state.state.holds_table["old-hold"]
    state.state.inventory_table["ev"] = b"i"
    state.state.user_tickets_table["ev/u"] = 1
    state.state.statuses_table["ev/r"] = b"s"
    batch = state.seal()
    assert context.partition is None

    assert state.write(batch.claims) == 1
    assert holds.log == [("set", "new-hold", 2)] and inventory.log == statuses.log == []
    assert state.write(batch.records) == 3
    assert [e[1] for e in inventory.log + users.log + statuses.log] == ["ev", "ev/u", "ev/r"]
    assert "old-hold" in holds.data and "old-hold" not in state.state.holds_table
    assert state.write(batch.removals) == 1
    assert holds.log[-1] == ("del", "old-hold", 2) and state.dirty == 0
    assert context.partition is None


def test_the_next_batch_is_decided_over_a_sealed_batch_whose_writes_wait() -> None:
    """Batch 2 reads batch 1's pending writes; writing batch 1 keeps batch 2's newer value of
    a key in the overlay (and in the reads), writing batch 2 then writes it and empties it."""
    context = Context()
    inventory, users, holds, statuses = (FakeTable(context) for _ in range(4))
    state = WriteBackState(TicketingState(inventory, holds, users, statuses), context.activate)
    overlay = state.state.inventory_table
    state.enter(1)
    overlay["ev"] = 1
    overlay["only-first"] = 1
    first = state.seal()
    state.enter(3)
    assert overlay["ev"] == 1  # batch 1's write, not in the table yet
    overlay["ev"] = 2
    second = state.seal()

    assert state.write(first.records) == 2
    assert inventory.data == {"ev": 1, "only-first": 1}
    assert overlay["ev"] == 2 and state.dirty == 1
    assert state.write(second.records) == 1
    assert inventory.log == [("set", "ev", 1), ("set", "only-first", 1), ("set", "ev", 3)]
    assert inventory.data["ev"] == 2 and state.dirty == 0
    assert state.seal() == type(first)([], [], [])  # nothing written since


# --- the overlay decides exactly like per-record tables --------------------------------------


@dataclass
class Clock:
    now: int = 1_000_000

    def __call__(self) -> int:
        return self.now


def _processor(state: TicketingState, clock: Clock) -> SagaInventoryProcessor:
    return SagaInventoryProcessor(
        state,
        HoldExpiryIndex(PARTITIONS),
        partitions=PARTITIONS,
        hold_ttl_ms=1_000,
        max_quantity=4,
        clock_ms=clock,
    )


def _part(event_id: str) -> int:
    return partition_for_key(event_id.encode(), PARTITIONS)


def _records() -> list[tuple[Envelope, Coordinates]]:
    """Creates, requests (with duplicates, limit and sold-out cases) over three events."""
    records: list[tuple[Envelope, Coordinates]] = []
    events = ["ev-a", "ev-b", "ev-c"]
    for event_id in events:
        created = EventCreated(
            event_id=event_id, name="S", capacity=7, price_cents=100, max_per_user=3
        )
        records.append((Envelope.new(created, source="t"), _at(event_id, "ticket-requests")))
    for i in range(40):
        event_id = events[i % 3]
        request = TicketRequested(
            event_id=event_id, request_id=f"r{i % 31}", user_id=f"u{i % 5}", quantity=1 + i % 3
        )
        records.append((Envelope.new(request, source="t"), _at(event_id, "ticket-requests")))
    return records


def _at(event_id: str, topic: str) -> Coordinates:
    return Coordinates(topic, _part(event_id), 0)


def _follow_ups(out: list[Outgoing]) -> list[tuple[Envelope, Coordinates]]:
    """Capture or decline most holds (one capture twice); every third one is left to expire."""
    records: list[tuple[Envelope, Coordinates]] = []
    reserved = [o.envelope for o in out if isinstance(o.envelope.data, SeatsReserved)]
    for n, envelope in enumerate(reserved):
        hold = envelope.data
        assert isinstance(hold, SeatsReserved)
        if n % 3 == 2:
            continue
        data = (
            PaymentCaptured.from_hold(hold, f"pay-{n}")
            if n % 2 == 0
            else PaymentDeclined.from_hold(hold)
        )
        follow = envelope.caused(data)
        records.append((follow, _at(hold.event_id, "payments")))
        if n == 0:
            records.append((follow, _at(hold.event_id, "payments")))
    return records


def _tick(partition: int, now_ms: int) -> tuple[Envelope, Coordinates]:
    tick = HoldExpiryTick(partition=partition, now_ms=now_ms)
    return Envelope.new(tick, source="t"), Coordinates("inventory-ticks", partition, 0)


def _run_per_record(
    processor: SagaInventoryProcessor, records: list[tuple[Envelope, Coordinates]]
) -> list[Outgoing]:
    out: list[Outgoing] = []
    for envelope, where in records:
        out.extend(processor.handle(envelope, where))
    return out


def _run_batched(
    processor: SagaInventoryProcessor,
    overlay: WriteBackState,
    records: list[tuple[Envelope, Coordinates]],
    size: int,
) -> list[Outgoing]:
    out: list[Outgoing] = []
    for start in range(0, len(records), size):
        for envelope, where in records[start : start + size]:
            overlay.enter(where.partition)
            out.extend(processor.handle(envelope, where))
        overlay.flush()
    return out


def _ids(out: list[Outgoing]) -> list[tuple[str, str, str]]:
    return [(o.topic, o.envelope.event_type, o.envelope.event_id) for o in out]


@pytest.mark.parametrize("size", [2, 7, 1000])
def test_batched_decisions_and_final_tables_equal_the_per_record_ones(size: int) -> None:
    clock = Clock()
    reference_state = TicketingState({}, {}, {}, {})
    reference = _processor(reference_state, clock)
    context = Context()
    tables = [FakeTable(context) for _ in range(4)]
    base = TicketingState(*tables)
    overlay = WriteBackState(base, context.activate)
    batched = _processor(overlay.state, clock)

    first = _records()
    expected = _run_per_record(reference, first)
    assert _ids(_run_batched(batched, overlay, first, size)) == _ids(expected)
    assert any(o.envelope.event_type == "RequestRejected" for o in expected)

    second = _follow_ups(expected)
    clock.now += 500
    expected_second = _run_per_record(reference, second)
    assert _ids(_run_batched(batched, overlay, second, size)) == _ids(expected_second)

    clock.now += 10_000
    third = [_tick(p, clock.now) for p in range(PARTITIONS)] + first[3:9]
    expected_third = _run_per_record(reference, third)
    assert any(o.envelope.event_type == "SeatsReleased" for o in expected_third)
    assert _ids(_run_batched(batched, overlay, third, size)) == _ids(expected_third)

    assert [t.data for t in tables] == [
        reference_state.inventory_table,
        reference_state.holds_table,
        reference_state.user_tickets_table,
        reference_state.statuses_table,
    ]
    event_of_hold = {
        o.envelope.data.reservation_id: o.envelope.data.event_id
        for o in expected
        if isinstance(o.envelope.data, SeatsReserved)
    }
    written = 0
    for table in tables:
        for action, key, partition in table.log:
            event_id = event_of_hold.get(key, key.split("/")[0])
            assert partition == _part(event_id), (action, key)
            written += 1
    assert written > 0
