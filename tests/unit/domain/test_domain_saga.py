"""confirm_hold, release_hold, expire_holds: every branch, and idempotence."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eventpro.domain import (
    DecisionKind,
    EventInventory,
    Hold,
    InvalidRequest,
    Payment,
    Reason,
    SagaKind,
    Status,
    TicketRequest,
    UnknownEvent,
    adjust_user_tickets,
    confirm_hold,
    decide_request,
    expire_holds,
    release_hold,
    ticket_ids_for,
)

NOW = 1_000_000
TTL = 60_000
BASE = EventInventory("ev-1", "Concert", capacity=10, price_cents=1500, max_per_user=4)
DECISION = decide_request(
    BASE,
    0,
    None,
    TicketRequest("req-1", "ev-1", "user-1", 3, "corr-1"),
    now_ms=NOW,
    hold_ttl_ms=TTL,
    max_quantity=6,
)
assert DECISION.kind is DecisionKind.RESERVED
INV = DECISION.inventory
HOLD = DECISION.hold
STATUS = DECISION.status
PAYMENT = Payment(HOLD.reservation_id, "req-1", "ev-1", HOLD.amount_cents, "pay-1")


def test_capture_of_live_hold_confirms() -> None:
    result = confirm_hold(INV, HOLD, STATUS, PAYMENT, now_ms=NOW + 1)
    assert result.kind is SagaKind.CONFIRMED
    assert result.inventory == replace(BASE, held=0, sold=3)
    assert result.removed_hold == HOLD
    assert result.user_tickets_delta == 0
    assert result.refund is None
    assert not result.seats_released
    status = result.status
    assert status is not None
    assert status.status is Status.CONFIRMED
    assert status.ticket_ids == ticket_ids_for(HOLD.reservation_id, 3)
    assert status.correlation_id == "corr-1"


def test_capture_of_a_sold_claim_whose_status_was_lost_confirms_again() -> None:
    """A crash stored the batch's claims (the sold claim) but not its records (status,
    counters): the capture comes again, after the hold's expiry. Seen in a chaos run: it was
    refunded and the request never got an outcome, while its seats stayed sold."""
    sold = replace(HOLD, sold=True)
    late = HOLD.expires_at_ms + 1
    result = confirm_hold(INV, sold, STATUS, PAYMENT, now_ms=late)
    assert result.kind is SagaKind.CONFIRMED
    assert result.inventory is None  # counters come from the claims (recount), not twice
    assert result.removed_hold is None and result.refund is None
    status = result.status
    assert status is not None and status.status is Status.CONFIRMED
    assert status.ticket_ids == ticket_ids_for(HOLD.reservation_id, 3)
    again = confirm_hold(INV, sold, status, PAYMENT, now_ms=late + 1)
    assert again.kind is SagaKind.DUPLICATE


def test_a_sold_claim_of_another_reservation_is_not_a_live_hold() -> None:
    other = replace(HOLD, reservation_id="res-other", sold=True)
    result = confirm_hold(INV, other, STATUS, PAYMENT, now_ms=NOW + 1)
    assert result.kind is SagaKind.REFUND_REQUIRED
    assert result.inventory == INV and result.removed_hold is None


def test_capture_twice_confirms_once() -> None:
    first = confirm_hold(INV, HOLD, STATUS, PAYMENT, now_ms=NOW + 1)
    again = confirm_hold(first.inventory, None, first.status, PAYMENT, now_ms=NOW + 2)
    assert again.kind is SagaKind.DUPLICATE
    assert not again.changed
    assert again.inventory is first.inventory
    assert again.status is first.status


def test_capture_after_release_requires_refund_and_sells_nothing() -> None:
    released = release_hold(INV, HOLD, STATUS, Reason.EXPIRED, now_ms=NOW + TTL)
    late = confirm_hold(released.inventory, None, released.status, PAYMENT, now_ms=NOW + TTL)
    assert late.kind is SagaKind.REFUND_REQUIRED
    assert late.inventory is released.inventory
    assert late.inventory.sold == 0
    assert late.refund is not None
    assert (late.refund.reservation_id, late.refund.amount_cents, late.refund.payment_id) == (
        HOLD.reservation_id,
        4500,
        "pay-1",
    )
    assert late.status is not None
    assert late.status.status is Status.FAILED
    assert late.status.reason is Reason.EXPIRED
    assert late.status.refunded
    assert not late.seats_released
    twice = confirm_hold(late.inventory, None, late.status, PAYMENT, now_ms=NOW + TTL + 1)
    assert twice.kind is SagaKind.DUPLICATE
    assert twice.refund is None


def test_capture_of_expired_but_unreleased_hold_releases_and_refunds() -> None:
    result = confirm_hold(INV, HOLD, STATUS, PAYMENT, now_ms=HOLD.expires_at_ms)
    assert result.kind is SagaKind.REFUND_REQUIRED
    assert result.inventory == BASE
    assert result.removed_hold == HOLD
    assert result.user_tickets_delta == -3
    assert result.seats_released
    assert result.refund is not None
    assert result.status is not None
    assert (result.status.status, result.status.reason) == (Status.FAILED, Reason.EXPIRED)


def test_capture_without_any_state_requires_refund() -> None:
    result = confirm_hold(None, None, None, PAYMENT, now_ms=NOW)
    assert result.kind is SagaKind.REFUND_REQUIRED
    assert result.status is None
    assert result.refund is not None


def test_capture_for_another_reservation_does_not_confirm_this_hold() -> None:
    other = replace(PAYMENT, reservation_id="someone-else")
    result = confirm_hold(INV, HOLD, STATUS, other, now_ms=NOW + 1)
    assert result.kind is SagaKind.REFUND_REQUIRED
    assert result.inventory is INV
    assert result.removed_hold is None


def test_capture_with_live_hold_but_no_inventory_raises() -> None:
    with pytest.raises(UnknownEvent, match="rebuild"):
        confirm_hold(None, HOLD, STATUS, PAYMENT, now_ms=NOW + 1)


def test_capture_with_hold_but_lost_status_still_confirms() -> None:
    result = confirm_hold(INV, HOLD, None, PAYMENT, now_ms=NOW + 1)
    assert result.kind is SagaKind.CONFIRMED
    assert result.status is not None
    assert result.status.request_id == "req-1"


@pytest.mark.parametrize("reason", [Reason.PAYMENT_DECLINED, Reason.EXPIRED])
def test_release_gives_seats_back(reason: Reason) -> None:
    result = release_hold(INV, HOLD, STATUS, reason, now_ms=NOW + 5)
    assert result.kind is SagaKind.RELEASED
    assert result.inventory == BASE
    assert result.removed_hold == HOLD
    assert result.user_tickets_delta == -3
    assert result.seats_released
    assert result.status is not None
    assert (result.status.status, result.status.reason) == (Status.FAILED, reason)
    assert result.status.updated_at_ms == NOW + 5


def test_release_twice_releases_once() -> None:
    first = release_hold(INV, HOLD, STATUS, Reason.PAYMENT_DECLINED, now_ms=NOW)
    again = release_hold(first.inventory, None, first.status, Reason.EXPIRED, now_ms=NOW)
    assert again.kind is SagaKind.DUPLICATE
    assert not again.changed
    assert again.status is first.status


def test_release_after_confirm_is_a_no_op() -> None:
    confirmed = confirm_hold(INV, HOLD, STATUS, PAYMENT, now_ms=NOW)
    result = release_hold(
        confirmed.inventory, None, confirmed.status, Reason.PAYMENT_DECLINED, now_ms=NOW
    )
    assert result.kind is SagaKind.DUPLICATE
    assert result.inventory is confirmed.inventory


def test_release_finishes_a_status_left_behind_by_a_crash() -> None:
    result = release_hold(INV, None, STATUS, Reason.PAYMENT_DECLINED, now_ms=NOW)
    assert result.kind is SagaKind.RELEASED
    assert result.inventory is INV
    assert result.user_tickets_delta == 0
    assert result.status is not None
    assert result.status.status is Status.FAILED


def test_release_of_nothing_known_is_a_no_op() -> None:
    assert release_hold(INV, None, None, Reason.EXPIRED, now_ms=NOW).kind is SagaKind.DUPLICATE


def test_release_rejects_a_non_release_reason() -> None:
    with pytest.raises(InvalidRequest, match="release reason"):
        release_hold(INV, HOLD, STATUS, Reason.SOLD_OUT, now_ms=NOW)


def test_release_with_hold_but_no_inventory_raises() -> None:
    with pytest.raises(UnknownEvent):
        release_hold(None, HOLD, STATUS, Reason.EXPIRED, now_ms=NOW)


def test_expire_holds_returns_due_holds_oldest_first() -> None:
    a = Hold("a", "ra", "ev", "u", 1, 1, 100)
    b = Hold("b", "rb", "ev", "u", 1, 1, 50)
    c = Hold("c", "rc", "ev", "u", 1, 1, 101)
    d = Hold("0", "rd", "ev", "u", 1, 1, 100)
    assert expire_holds([a, b, c, d], 100) == [b, d, a]
    assert expire_holds([a, b], 10) == []


@pytest.mark.parametrize(("current", "delta", "expected"), [(3, -3, 0), (3, -5, 0), (1, 2, 3)])
def test_adjust_user_tickets(current: int, delta: int, expected: int) -> None:
    assert adjust_user_tickets(current, delta) == expected
