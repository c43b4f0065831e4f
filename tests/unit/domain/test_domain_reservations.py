"""decide_request: every branch, in the documented order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eventpro.domain import (
    DecisionKind,
    EventInventory,
    InventoryInvariantViolated,
    Reason,
    RequestStatus,
    Status,
    TicketRequest,
    decide_request,
    reservation_id_for,
)

NOW = 1_000_000
TTL = 60_000
INV = EventInventory("ev-1", "Concert", capacity=10, price_cents=1500, max_per_user=4)
REQ = TicketRequest("req-1", "ev-1", "user-1", quantity=2, correlation_id="corr-1")


def decide(
    inventory: EventInventory | None = INV,
    user_tickets: int = 0,
    existing: RequestStatus | None = None,
    request: TicketRequest = REQ,
    max_quantity: int = 6,
):
    return decide_request(
        inventory,
        user_tickets,
        existing,
        request,
        now_ms=NOW,
        hold_ttl_ms=TTL,
        max_quantity=max_quantity,
    )


def test_reserves_seats_with_a_hold_and_deterministic_reservation_id() -> None:
    decision = decide()
    assert decision.kind is DecisionKind.RESERVED
    assert decision.changed
    assert decision.inventory == replace(INV, held=2)
    assert decision.user_tickets == 2
    hold = decision.hold
    assert hold is not None
    assert hold.reservation_id == reservation_id_for("ev-1", "req-1")
    assert (hold.quantity, hold.amount_cents, hold.expires_at_ms) == (2, 3000, NOW + TTL)
    assert (hold.request_id, hold.event_id, hold.user_id) == ("req-1", "ev-1", "user-1")
    status = decision.status
    assert status.status is Status.RESERVED
    assert status.reason is None
    assert status.reservation_id == hold.reservation_id
    assert status.correlation_id == "corr-1"
    assert status.updated_at_ms == NOW


def test_replay_produces_the_same_reservation_id() -> None:
    assert decide().hold == decide().hold


def test_duplicate_returns_existing_outcome_and_changes_nothing() -> None:
    first = decide()
    again = decide(inventory=first.inventory, user_tickets=2, existing=first.status)
    assert again.kind is DecisionKind.DUPLICATE
    assert not again.changed
    assert again.status is first.status
    assert again.inventory is first.inventory
    assert again.hold is None
    assert again.user_tickets == 2


def test_duplicate_is_checked_before_validation() -> None:
    rejected = decide(request=replace(REQ, quantity=0)).status
    again = decide(existing=rejected, request=replace(REQ, quantity=0))
    assert again.kind is DecisionKind.DUPLICATE
    assert again.status.reason is Reason.INVALID


def test_pending_status_is_not_a_duplicate() -> None:
    pending = RequestStatus.pending(REQ, now_ms=NOW - 1)
    assert decide(existing=pending).kind is DecisionKind.RESERVED


@pytest.mark.parametrize("quantity", [0, -1, 7])
def test_invalid_quantity_is_rejected(quantity: int) -> None:
    decision = decide(request=replace(REQ, quantity=quantity), inventory=None)
    assert decision.kind is DecisionKind.REJECTED
    assert decision.status.status is Status.REJECTED
    assert decision.status.reason is Reason.INVALID
    assert decision.hold is None


def test_unknown_event_is_rejected() -> None:
    decision = decide(inventory=None)
    assert decision.kind is DecisionKind.REJECTED
    assert decision.status.reason is Reason.UNKNOWN_EVENT
    assert decision.inventory is None


@pytest.mark.parametrize(("already", "quantity"), [(3, 2), (0, 5), (4, 1)])
def test_user_over_limit_is_rejected(already: int, quantity: int) -> None:
    decision = decide(user_tickets=already, request=replace(REQ, quantity=quantity))
    assert decision.status.reason is Reason.LIMIT_EXCEEDED
    assert decision.inventory is INV
    assert decision.user_tickets == already


def test_user_exactly_at_limit_is_accepted() -> None:
    decision = decide(user_tickets=2, request=replace(REQ, quantity=2))
    assert decision.kind is DecisionKind.RESERVED
    assert decision.user_tickets == 4


def test_not_enough_seats_is_sold_out_all_or_nothing() -> None:
    nearly_full = replace(INV, held=5, sold=4)
    decision = decide(inventory=nearly_full)
    assert decision.status.reason is Reason.SOLD_OUT
    assert decision.inventory is nearly_full
    assert decision.hold is None


def test_last_seats_can_be_taken() -> None:
    decision = decide(inventory=replace(INV, held=4, sold=4))
    assert decision.kind is DecisionKind.RESERVED
    assert decision.inventory is not None
    assert decision.inventory.available == 0


def test_limit_is_checked_before_sold_out() -> None:
    decision = decide(inventory=replace(INV, sold=10), user_tickets=4)
    assert decision.status.reason is Reason.LIMIT_EXCEEDED


def test_corrupt_stored_inventory_raises() -> None:
    with pytest.raises(InventoryInvariantViolated, match="held"):
        decide(inventory=replace(INV, held=-1))
