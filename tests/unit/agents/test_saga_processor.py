"""The inventory side of the saga without Faust: captures, declines, late captures, replays."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from eventpro.agents.processing import Coordinates, EmittedHere, Outgoing
from eventpro.agents.saga import SagaInventoryProcessor
from eventpro.domain import Status
from eventpro.schemas import (
    Envelope,
    EventCreated,
    HoldExpiryTick,
    OrderConfirmed,
    PaymentCaptured,
    PaymentDeclined,
    RefundRequested,
    SeatsReleased,
    SeatsReserved,
    TicketRequested,
    TicketRequestedV1,
    decode,
    encode,
)
from eventpro.tables.expiry import HoldExpiryIndex
from eventpro.tables.state import TicketingState
from eventpro.topics import partition_for_key

PARTITIONS = 4
TTL_MS = 1_000


@dataclass
class Clock:
    now: int = 1_000_000

    def __call__(self) -> int:
        return self.now


def _setup(
    capacity: int = 3, *, emitted_here: EmittedHere | None = None
) -> tuple[SagaInventoryProcessor, Clock, TicketingState]:
    state = TicketingState({}, {}, {}, {})
    clock = Clock()
    processor = SagaInventoryProcessor(
        state,
        HoldExpiryIndex(PARTITIONS),
        partitions=PARTITIONS,
        hold_ttl_ms=TTL_MS,
        max_quantity=10,
        clock_ms=clock,
        emitted_here=emitted_here,
    )
    created = EventCreated(
        event_id="ev", name="Show", capacity=capacity, price_cents=500, max_per_user=10
    )
    processor.handle(Envelope.new(created, source="t"), _at("ticket-requests"))
    return processor, clock, state


def _at(topic: str) -> Coordinates:
    return Coordinates(topic, partition_for_key(b"ev", PARTITIONS), 0)


def _reserve(processor: SagaInventoryProcessor, request_id: str, qty: int = 2) -> Envelope:
    request = TicketRequested(event_id="ev", request_id=request_id, user_id="u1", quantity=qty)
    [out] = processor.handle(
        Envelope.new(request, source="t", correlation_id=f"corr-{request_id}"),
        _at("ticket-requests"),
    )
    assert isinstance(out.envelope.data, SeatsReserved)
    return out.envelope


def _captured(reserved: Envelope) -> Envelope:
    hold = reserved.data
    assert isinstance(hold, SeatsReserved)
    return reserved.caused(PaymentCaptured.from_hold(hold, "pay-1"))


def _kinds(out: list[Outgoing]) -> list[tuple[str, str]]:
    return [(o.topic, o.envelope.event_type) for o in out]


def test_capture_sells_the_held_seats_and_confirms_the_order() -> None:
    processor, _, state = _setup()
    reserved = _reserve(processor, "r1")
    out = processor.handle(_captured(reserved), _at("payments"))
    assert _kinds(out) == [("orders", "OrderConfirmed")]
    order = out[0].envelope.data
    assert isinstance(order, OrderConfirmed) and len(order.ticket_ids) == 2
    assert out[0].envelope.correlation_id == "corr-r1"
    inventory = state.inventory("ev")
    assert inventory is not None and (inventory.held, inventory.sold) == (0, 2)
    status = state.status("ev", "r1")
    assert status is not None and status.status is Status.CONFIRMED
    assert status.ticket_ids == order.ticket_ids
    # A redelivered capture writes nothing and re-emits the same order.
    again = processor.handle(_captured(reserved), _at("payments"))
    assert [o.envelope.event_id for o in again] == [out[0].envelope.event_id]
    inventory = state.inventory("ev")
    assert inventory is not None and inventory.sold == 2


def test_decline_releases_the_seats_once() -> None:
    processor, _, state = _setup()
    reserved = _reserve(processor, "r1")
    hold = reserved.data
    assert isinstance(hold, SeatsReserved)
    declined = reserved.caused(PaymentDeclined.from_hold(hold))
    out = processor.handle(declined, _at("payments"))
    assert _kinds(out) == [("reservations", "SeatsReleased")]
    released = out[0].envelope.data
    assert isinstance(released, SeatsReleased) and released.reason.value == "payment_declined"
    inventory = state.inventory("ev")
    assert inventory is not None and (inventory.held, inventory.sold) == (0, 0)
    assert state.user_tickets("ev", "u1") == 0
    again = processor.handle(declined, _at("payments"))
    assert [o.envelope.event_id for o in again] == [out[0].envelope.event_id]


def test_capture_after_the_hold_expired_is_refunded_not_sold() -> None:
    processor, clock, state = _setup(capacity=2)
    reserved = _reserve(processor, "r1", qty=2)
    clock.now += TTL_MS + 1
    out = processor.handle(_captured(reserved), _at("payments"))
    assert _kinds(out) == [("reservations", "SeatsReleased"), ("reservations", "RefundRequested")]
    refund = out[1].envelope.data
    assert isinstance(refund, RefundRequested) and refund.amount_cents == 1000
    inventory = state.inventory("ev")
    assert inventory is not None and (inventory.held, inventory.sold) == (0, 0)
    status = state.status("ev", "r1")
    assert status is not None and status.status is Status.FAILED and status.refunded


def test_capture_after_the_tick_released_the_hold_refunds_without_overselling() -> None:
    processor, clock, state = _setup(capacity=2)
    late = _reserve(processor, "r1", qty=2)
    clock.now += TTL_MS + 1
    tick = HoldExpiryTick(partition=_at("x").partition, now_ms=clock.now)
    released = processor.handle(Envelope.new(tick, source="t"), _at("inventory-ticks"))
    assert _kinds(released) == [("reservations", "SeatsReleased")]
    _reserve(processor, "r2", qty=2)  # the seats went to someone else
    out = processor.handle(_captured(late), _at("payments"))
    assert _kinds(out) == [("reservations", "RefundRequested")]
    inventory = state.inventory("ev")
    assert inventory is not None
    assert inventory.held + inventory.sold <= inventory.capacity
    assert (inventory.held, inventory.sold) == (2, 0)
    # A redelivered late capture asks for the same refund again (the gateway refunds once).
    again = processor.handle(_captured(late), _at("payments"))
    assert [o.envelope.event_id for o in again] == [out[0].envelope.event_id]


def test_ticket_requested_v1_and_v2_are_accepted_side_by_side() -> None:
    processor, _, state = _setup(capacity=5)
    v1 = {
        "event_type": "TicketRequested",
        "schema_version": 1,
        "event_id": "legacy-envelope-1",
        "occurred_at": "2025-05-01T12:00:00Z",
        "source": "old-box-office",
        "data": {"event": "ev", "user": "u9", "qty": 2},
    }
    legacy = decode(orjson.dumps(v1))
    assert (
        isinstance(legacy.data, TicketRequested) and legacy.data.request_id == "legacy-envelope-1"
    )
    assert TicketRequestedV1.SCHEMA_VERSION == 1
    current = decode(
        encode(
            Envelope.new(
                TicketRequested(event_id="ev", request_id="new-1", user_id="u8", quantity=3),
                source="web-shop",
            )
        )
    )
    outs = [processor.handle(env, _at("ticket-requests")) for env in (legacy, current)]
    assert [o[0].envelope.event_type for o in outs] == ["SeatsReserved", "SeatsReserved"]
    assert outs[0][0].envelope.correlation_id == "legacy-envelope-1"
    inventory = state.inventory("ev")
    assert inventory is not None and inventory.held == 5


def test_exactly_once_mode_emits_nothing_twice_from_the_same_process() -> None:
    """A record this process already applied is in its transaction: a replay would duplicate.

    A record applied by an earlier incarnation (state recovered, outcome maybe aborted) is
    replayed as in at-least-once mode.
    """
    emitted = EmittedHere()
    processor, _, state = _setup(emitted_here=emitted)
    reserved = _reserve(processor, "r1")
    request = TicketRequested(event_id="ev", request_id="r1", user_id="u1", quantity=2)
    assert processor.handle(Envelope.new(request, source="t"), _at("ticket-requests")) == []
    [order] = processor.handle(_captured(reserved), _at("payments"))
    assert order.envelope.event_type == "OrderConfirmed"
    assert processor.handle(_captured(reserved), _at("payments")) == []
    rejected = TicketRequested(event_id="ev", request_id="r2", user_id="u2", quantity=5)
    [first] = processor.handle(Envelope.new(rejected, source="t"), _at("ticket-requests"))
    assert first.envelope.event_type == "RequestRejected"
    assert processor.handle(Envelope.new(rejected, source="t"), _at("ticket-requests")) == []
    inventory = state.inventory("ev")
    assert inventory is not None and (inventory.held, inventory.sold) == (0, 2)

    emitted.clear()  # a new incarnation (or partitions that moved) replays
    [again] = processor.handle(_captured(reserved), _at("payments"))
    assert again.envelope.event_id == order.envelope.event_id
    [replayed] = processor.handle(Envelope.new(rejected, source="t"), _at("ticket-requests"))
    assert replayed.envelope.event_id == first.envelope.event_id


def test_emitted_here_forgets_the_oldest_past_its_limit() -> None:
    emitted = EmittedHere(limit=2)
    for key in ("a", "b", "c"):
        emitted.add(key)
    assert "a" not in emitted and "b" in emitted and "c" in emitted
    assert len(emitted) == 2


def test_a_redelivered_request_re_announces_its_finished_reservation() -> None:
    """State kept but SeatsReserved lost, then the hold expired: the replay announces it."""
    processor, clock, state = _setup()
    reserved = _reserve(processor, "r1")
    clock.now += TTL_MS + 1
    tick = HoldExpiryTick(partition=partition_for_key(b"ev", PARTITIONS), now_ms=clock.now)
    [released] = processor.handle(Envelope.new(tick, source="t"), _at("inventory-ticks"))
    assert isinstance(released.envelope.data, SeatsReleased)
    request = TicketRequested(event_id="ev", request_id="r1", user_id="u1", quantity=2)
    [again] = processor.handle(Envelope.new(request, source="t"), _at("ticket-requests"))
    assert again.envelope.event_id == reserved.event_id
    data = again.envelope.data
    assert isinstance(data, SeatsReserved)
    assert (data.quantity, data.amount_cents) == (2, 1000)
    assert data.expires_at_ms <= clock.now
    inventory = state.inventory("ev")
    assert inventory is not None and (inventory.held, inventory.sold) == (0, 0)


def test_a_confirmed_hold_stays_as_a_sold_claim() -> None:
    """Sold seats stay countable from the holds table (reconcile recounts ``sold`` from it)."""
    processor, _, state = _setup()
    reserved = _reserve(processor, "r1")
    processor.handle(_captured(reserved), _at("payments"))
    data = reserved.data
    assert isinstance(data, SeatsReserved)
    assert state.hold(data.reservation_id) is None  # no longer a live hold
    claim = state.claim(data.reservation_id)
    assert claim is not None and claim.sold and claim.quantity == 2
    assert list(state.holds()) == [] and [c.reservation_id for c in state.claims()] == [
        data.reservation_id
    ]


def test_a_request_whose_claim_survived_a_crash_without_its_status_is_not_decided_again() -> None:
    """Claims are flushed before statuses: a crash between leaves a claim and no status. The
    redelivered request must finish that reservation, not hold the seats a second time (or
    be rejected as sold out by its own hold)."""
    processor, _, state = _setup(capacity=2)
    reserved = _reserve(processor, "r1", qty=2)
    status_key = next(iter(state.statuses_table))
    del state.statuses_table[status_key]  # the crash lost the status, kept the claim
    request = TicketRequested(event_id="ev", request_id="r1", user_id="u1", quantity=2)
    [again] = processor.handle(Envelope.new(request, source="t"), _at("ticket-requests"))
    assert again.envelope.event_id == reserved.event_id
    assert isinstance(again.envelope.data, SeatsReserved)
    status = state.status("ev", "r1")
    assert status is not None and status.status is Status.RESERVED
    inventory = state.inventory("ev")
    assert inventory is not None and (inventory.held, inventory.available) == (2, 0)
    assert state.user_tickets("ev", "u1") == 2


def test_an_expired_claim_whose_status_was_lost_is_announced_before_its_release() -> None:
    """The tick may come before the redelivered request: the release must still follow a
    SeatsReserved, or consumers would see seats released that were never reserved."""
    processor, clock, state = _setup()
    reserved = _reserve(processor, "r1")
    del state.statuses_table[next(iter(state.statuses_table))]
    clock.now += TTL_MS + 1
    tick = HoldExpiryTick(partition=partition_for_key(b"ev", PARTITIONS), now_ms=clock.now)
    out = processor.handle(Envelope.new(tick, source="t"), _at("inventory-ticks"))
    assert [o.envelope.event_type for o in out] == ["SeatsReserved", "SeatsReleased"]
    assert out[0].envelope.event_id == reserved.event_id
    inventory = state.inventory("ev")
    assert inventory is not None and inventory.held == 0
    status = state.status("ev", "r1")
    assert status is not None and status.status is Status.FAILED
