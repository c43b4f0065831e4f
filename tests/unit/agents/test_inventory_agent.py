"""The inventory agent under Faust's test context: outcomes, dedup, DLQ, tick-driven expiry."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from typing import Any

import orjson

from eventpro.agents import inventory as inventory_module
from eventpro.agents.inventory import inventory_agent, processor, send_expiry_ticks
from eventpro.domain import reservation_id_for
from eventpro.schemas import (
    DeadLetter,
    Envelope,
    EventCreated,
    HoldExpiryTick,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
    TicketRequested,
    encode,
)
from eventpro.settings import get_settings
from eventpro.tables import state, ticketing
from eventpro.topics import partition_for_key

PARTITIONS = get_settings().partitions


def _part(event_id: str) -> int:
    return partition_for_key(event_id.encode(), PARTITIONS)


def _created(event_id: str, capacity: int = 3, max_per_user: int = 4) -> bytes:
    data = EventCreated(
        event_id=event_id,
        name="Show",
        capacity=capacity,
        price_cents=500,
        max_per_user=max_per_user,
    )
    return encode(Envelope.new(data, source="test"))


def _request(event_id: str, request_id: str, quantity: int = 1, user_id: str = "u1") -> bytes:
    data = TicketRequested(
        event_id=event_id, request_id=request_id, user_id=user_id, quantity=quantity
    )
    return encode(Envelope.new(data, source="test"))


async def test_reserves_then_rejects_sold_out(faust_app: object, outbox: Any) -> None:
    ev, p = "ev-sold", _part("ev-sold")
    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=3), key=ev.encode(), partition=p)
        await agent.put(_request(ev, "r1", 2), key=ev.encode(), partition=p)
        await agent.put(_request(ev, "r2", 2, user_id="u2"), key=ev.encode(), partition=p)
    out = outbox.on("reservations")
    assert [r.envelope.event_type for r in out] == ["SeatsReserved", "RequestRejected"]
    assert all(r.key == ev.encode() for r in out)
    reserved = out[0].envelope.data
    assert isinstance(reserved, SeatsReserved) and reserved.quantity == 2
    assert reserved.amount_cents == 1000
    rejected = out[1].envelope.data
    assert isinstance(rejected, RequestRejected) and rejected.reason.value == "sold_out"
    inventory = state.inventory(ev)
    assert inventory is not None and (inventory.held, inventory.sold) == (2, 0)
    status = state.status(ev, "r2")
    assert status is not None and status.status.value == "rejected"


async def test_duplicate_request_has_no_second_effect(faust_app: object, outbox: Any) -> None:
    ev, p = "ev-dup", _part("ev-dup")
    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=10), key=ev.encode(), partition=p)
        for _ in range(3):
            await agent.put(_request(ev, "same", 2), key=ev.encode(), partition=p)
    inventory = state.inventory(ev)
    assert inventory is not None and inventory.held == 2
    assert state.user_tickets(ev, "u1") == 2
    out = outbox.on("reservations")
    # Redeliveries re-emit the same outcome with the same envelope id: one distinct outcome.
    assert {r.envelope.event_id for r in out} == {out[0].envelope.event_id}
    assert {r.envelope.event_type for r in out} == {"SeatsReserved"}


async def test_garbage_goes_to_dlq_and_processing_continues(faust_app: object, outbox: Any) -> None:
    ev, p = "ev-dlq", _part("ev-dlq")
    async with inventory_agent.test_context() as agent:
        await agent.put(b"\xff not json", key=ev.encode(), partition=p)
        await agent.put(b'{"event_type": "Nope"}', key=ev.encode(), partition=p)
        await agent.put(_created(ev), key=ev.encode(), partition=p)
        await agent.put(_request(ev, "after-garbage"), key=ev.encode(), partition=p)
    letters = [r.envelope.data for r in outbox.on("dlq")]
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    assert [letter.reason for letter in letters] == ["invalid_json", "unknown_event_type"]
    first = letters[0]
    assert isinstance(first, DeadLetter)
    assert base64.b64decode(first.original_b64) == b"\xff not json"
    assert (first.partition, first.offset) == (p, 0)
    assert [r.envelope.event_type for r in outbox.on("reservations")] == ["SeatsReserved"]


async def test_record_on_wrong_partition_is_dead_lettered(faust_app: object, outbox: Any) -> None:
    ev = "ev-wrong"
    wrong = (_part(ev) + 1) % PARTITIONS
    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev), key=ev.encode(), partition=wrong)
    assert [r.envelope.data.reason for r in outbox.on("dlq")] == ["wrong_partition"]
    assert state.inventory(ev) is None


async def test_unknown_event_is_rejected(faust_app: object, outbox: Any) -> None:
    ev = "ev-missing"
    async with inventory_agent.test_context() as agent:
        await agent.put(_request(ev, "r1"), key=ev.encode(), partition=_part(ev))
    (record,) = outbox.on("reservations")
    data = record.envelope.data
    assert isinstance(data, RequestRejected) and data.reason.value == "unknown_event"


async def test_tick_expires_due_holds_only(faust_app: object, outbox: Any) -> None:
    ev, p = "ev-expiry", _part("ev-expiry")
    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=5), key=ev.encode(), partition=p)
        await agent.put(_request(ev, "r1", 2), key=ev.encode(), partition=p)
        hold_status = state.status(ev, "r1")
        assert hold_status is not None and hold_status.reservation_id is not None
        hold = state.hold(hold_status.reservation_id)
        assert hold is not None
        early = Envelope.new(
            HoldExpiryTick(partition=p, now_ms=hold.expires_at_ms - 1), source="test"
        )
        await agent.put(encode(early), partition=p)
        assert state.hold(hold.reservation_id) is not None
        due = Envelope.new(HoldExpiryTick(partition=p, now_ms=hold.expires_at_ms), source="test")
        await agent.put(encode(due), partition=p)
        await agent.put(encode(due), partition=p)
    released = [r for r in outbox.on("reservations") if r.envelope.event_type == "SeatsReleased"]
    assert len(released) == 1
    data = released[0].envelope.data
    assert isinstance(data, SeatsReleased) and data.reason.value == "expired"
    inventory = state.inventory(ev)
    assert inventory is not None and (inventory.held, inventory.available) == (0, 5)
    assert state.hold(hold.reservation_id) is None
    assert state.user_tickets(ev, "u1") == 0
    final = state.status(ev, "r1")
    assert final is not None and (final.status.value, final.reason) == ("failed", "expired")


async def test_index_is_rebuilt_from_the_table(faust_app: object, outbox: Any) -> None:
    ev, p = "ev-rebuild", _part("ev-rebuild")
    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=5), key=ev.encode(), partition=p)
        await agent.put(_request(ev, "r1", 1), key=ev.encode(), partition=p)
        processor.index.invalidate()  # as after a rebalance
        tick = Envelope.new(HoldExpiryTick(partition=p, now_ms=2**62), source="test")
        await agent.put(encode(tick), partition=p)
    assert [r.envelope.event_type for r in outbox.on("reservations")] == [
        "SeatsReserved",
        "SeatsReleased",
    ]


async def test_send_expiry_ticks_targets_every_partition(outbox: Any) -> None:
    await send_expiry_ticks(4, now_ms=123)
    ticks = outbox.on("inventory-ticks")
    assert [t.partition for t in ticks] == [0, 1, 2, 3]
    assert [t.envelope.data.partition for t in ticks] == [0, 1, 2, 3]
    assert {t.envelope.data.now_ms for t in ticks} == {123}


async def test_claims_are_acknowledged_before_statuses_and_removals_after_them(
    faust_app: object, outbox: Any, monkeypatch: Any
) -> None:
    """At least once, the agent waits for the broker between the flush steps; at each wait
    the tables hold exactly what the steps so far wrote."""
    ev, p = "ev-order", _part("ev-order")
    reservation = reservation_id_for(ev, "r1")
    seen: list[tuple[bool, str | None, list[str]]] = []

    async def persisted(futures: Any) -> None:
        status = state.status(ev, "r1")
        seen.append(
            (
                reservation in ticketing.holds_table.data,
                None if status is None else status.status.value,
                [r.envelope.event_type for r in outbox.on("reservations")],
            )
        )

    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=5), key=ev.encode(), partition=p)
        seen.clear()
        monkeypatch.setattr(inventory_module, "persisted", persisted)
        await agent.put(_request(ev, "r1", 2), key=ev.encode(), partition=p)
        # One wait: the claim is stored, no status, nothing sent (no removal to order).
        assert seen == [(True, None, [])]
        tick = Envelope.new(HoldExpiryTick(partition=p, now_ms=2**62), source="test")
        await agent.put(encode(tick), partition=p)
    # The expiry: the status and SeatsReleased are out before the claim is removed.
    assert seen[1:] == [
        (True, "reserved", ["SeatsReserved"]),
        (True, "failed", ["SeatsReserved", "SeatsReleased"]),
    ]
    assert reservation not in ticketing.holds_table.data


async def test_the_first_record_after_a_rebalance_recounts_its_partition(
    faust_app: object, outbox: Any
) -> None:
    ev, p = "ev-recount", _part("ev-recount")
    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=6), key=ev.encode(), partition=p)
        await agent.put(_request(ev, "r1", 2), key=ev.encode(), partition=p)
        # A crash left the counter of a second, lost decision: held 2 + 3 with one claim of 2.
        broken = state.inventory(ev)
        assert broken is not None
        ticketing.inventory_table.data[ev] = orjson.dumps(replace(broken, held=5).to_dict())
        inventory_module.pending_recount.invalidate()  # as after the takeover
        await agent.put(_request(ev, "r2", 4, user_id="u2"), key=ev.encode(), partition=p)
    assert [r.envelope.event_type for r in outbox.on("reservations")] == [
        "SeatsReserved",
        "SeatsReserved",
    ]
    inventory = state.inventory(ev)
    assert inventory is not None and (inventory.held, inventory.available) == (6, 0)


async def test_a_batch_that_spans_a_rebalance_stops_writing_and_is_not_acknowledged(
    faust_app: object, outbox: Any, monkeypatch: Any
) -> None:
    """Its partitions may have moved while it waited for the broker: the rest (statuses,
    outcomes) is left to the owner, which reads the records again."""
    ev, p = "ev-moved", _part("ev-moved")
    acked: list[bool] = []

    async def rebalance_during_the_wait(futures: Any) -> None:
        inventory_module.pending_recount.invalidate()

    real_abandon = inventory_module._abandon

    def abandon(events: Any) -> None:
        real_abandon(events)
        acked.extend(event.message.acked for event in events)

    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=5), key=ev.encode(), partition=p)
        monkeypatch.setattr(inventory_module, "persisted", rebalance_during_the_wait)
        monkeypatch.setattr(inventory_module, "_abandon", abandon)
        await agent.put(_request(ev, "r1", 2), key=ev.encode(), partition=p)
    assert outbox.on("reservations") == []
    assert state.status(ev, "r1") is None
    assert reservation_id_for(ev, "r1") in ticketing.holds_table.data  # step 1 was done
    assert acked == [True]  # marked, so take_events never hands it to the consumer's acks


async def test_the_next_batch_is_decided_while_a_batch_waits_for_the_broker(
    faust_app: object, outbox: Any, monkeypatch: Any
) -> None:
    """The agent does not wait for a batch's acknowledgements before deciding the next: the
    next batch reads the waiting batch's counters (no oversell), writes its own claims at
    once, and the outcomes still go out in record order once the broker answers."""
    ev, p = "ev-pipelined", _part("ev-pipelined")
    broker_answers = asyncio.Event()
    waits = 0
    decided = [asyncio.Event() for _ in range(3)]
    decide_batch = inventory_module.decide_batch

    async def persisted(futures: Any) -> None:
        nonlocal waits
        waits += 1
        await broker_answers.wait()

    async def decide_and_count(events: Any) -> Any:
        batch = await decide_batch(events)
        next(e for e in decided if not e.is_set()).set()
        return batch

    async def decided_batches(n: int) -> None:
        await asyncio.wait_for(decided[n - 1].wait(), timeout=5)

    async with inventory_agent.test_context() as agent:
        await agent.put(_created(ev, capacity=5), key=ev.encode(), partition=p)
        monkeypatch.setattr(inventory_module, "persisted", persisted)
        monkeypatch.setattr(inventory_module, "decide_batch", decide_and_count)
        first = asyncio.ensure_future(
            agent.put(_request(ev, "r1", 2), key=ev.encode(), partition=p)
        )
        await decided_batches(1)
        second = asyncio.ensure_future(
            agent.put(_request(ev, "r2", 2, user_id="u2"), key=ev.encode(), partition=p)
        )
        await decided_batches(2)
        assert reservation_id_for(ev, "r2") in ticketing.holds_table.data  # step 1 done
        third = asyncio.ensure_future(
            agent.put(_request(ev, "r3", 2, user_id="u3"), key=ev.encode(), partition=p)
        )
        await decided_batches(3)
        assert inventory_module.finisher.pending == 3
        assert waits == 1 and outbox.on("reservations") == [] and state.status(ev, "r1") is None
        broker_answers.set()
        await asyncio.gather(first, second, third)
    assert [
        (r.envelope.event_type, r.envelope.data.request_id) for r in outbox.on("reservations")
    ] == [
        ("SeatsReserved", "r1"),
        ("SeatsReserved", "r2"),
        ("RequestRejected", "r3"),
    ]
    inventory = state.inventory(ev)
    assert inventory is not None and (inventory.held, inventory.available) == (4, 1)
