"""The inventory side of the payment saga: confirm, release, expire, compensate.

Every function is idempotent given the state it is handed: applying a capture, a decline or
an expiry twice changes the state once, and the second call returns ``DUPLICATE``.

The agent stores a confirmed hold as a sold claim and deletes a released one; it writes claims
before the status (the record of "this step is done") and deletes them after it, waiting for
the broker in between (:class:`~eventpro.tables.batching.WriteBackState`), and recounts the
counters from the claims after a takeover (:mod:`eventpro.tables.reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from eventpro.domain.errors import InvalidRequest, UnknownEvent
from eventpro.domain.ids import ticket_ids_for
from eventpro.domain.model import (
    RELEASE_REASONS,
    EventInventory,
    Hold,
    Payment,
    Reason,
    RequestStatus,
    Status,
    check_inventory,
)

__all__ = (
    "Refund",
    "SagaKind",
    "SagaResult",
    "adjust_user_tickets",
    "confirm_hold",
    "expire_holds",
    "release_hold",
    "status_from_hold",
)

logger = logging.getLogger(__name__)


class SagaKind(StrEnum):
    """What a saga step did."""

    CONFIRMED = "confirmed"
    RELEASED = "released"
    REFUND_REQUIRED = "refund_required"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Refund:
    """Compensation: a captured payment that bought nothing and must be paid back.

    The gateway refund uses ``reservation_id`` as idempotency key.
    """

    reservation_id: str
    request_id: str
    event_id: str
    amount_cents: int
    payment_id: str


@dataclass(frozen=True, slots=True)
class SagaResult:
    """Outcome of :func:`confirm_hold` or :func:`release_hold`, with the state to write.

    - ``inventory``: the event's counters after the step (write when changed).
    - ``status``: the request's status after the step (``None`` when nothing is known).
    - ``removed_hold``: the hold that is no longer live (deleted, or kept as a sold claim
      for ``CONFIRMED``), if any.
    - ``user_tickets_delta``: add to the user's ticket count (see :func:`adjust_user_tickets`).
    - ``refund``: set for ``REFUND_REQUIRED``; emit ``RefundRequested``.

    Events to emit: ``CONFIRMED`` -> ``OrderConfirmed`` (``status.ticket_ids``);
    ``seats_released`` -> ``SeatsReleased(status.reason)``; ``refund`` -> ``RefundRequested``.
    ``DUPLICATE`` writes and emits nothing.
    """

    kind: SagaKind
    inventory: EventInventory | None
    status: RequestStatus | None
    removed_hold: Hold | None = None
    user_tickets_delta: int = 0
    refund: Refund | None = None

    @property
    def changed(self) -> bool:
        """True when any table must be written."""
        return self.kind is not SagaKind.DUPLICATE

    @property
    def seats_released(self) -> bool:
        """True when held seats went back on sale (emit ``SeatsReleased``)."""
        return self.kind is SagaKind.RELEASED or (
            self.kind is SagaKind.REFUND_REQUIRED and self.removed_hold is not None
        )


def adjust_user_tickets(current: int, delta: int) -> int:
    """A user's ticket count after a saga step (never below zero)."""
    return max(0, current + delta)


def status_from_hold(
    hold: Hold, *, correlation_id: str = "", updated_at_ms: int = 0
) -> RequestStatus:
    """The ``reserved`` status a hold implies (when the stored status is missing)."""
    return RequestStatus(
        request_id=hold.request_id,
        event_id=hold.event_id,
        user_id=hold.user_id,
        quantity=hold.quantity,
        status=Status.RESERVED,
        reservation_id=hold.reservation_id,
        correlation_id=correlation_id,
        updated_at_ms=updated_at_ms,
    )


def _release_counts(inventory: EventInventory | None, hold: Hold) -> EventInventory:
    if inventory is None:
        raise UnknownEvent(
            f"hold {hold.reservation_id!r} belongs to event {hold.event_id!r}, which has no "
            "inventory; the inventory table is missing data: rebuild it from its changelog"
        )
    return check_inventory(replace(inventory, held=inventory.held - hold.quantity))


def _confirmed(hold: Hold, status: RequestStatus | None, now_ms: int) -> RequestStatus:
    """The request's status once ``hold``'s seats are sold: confirmed, with its ticket ids."""
    base = status if status is not None else status_from_hold(hold)
    return base.evolve(
        status=Status.CONFIRMED,
        reason=None,
        reservation_id=hold.reservation_id,
        ticket_ids=ticket_ids_for(hold.reservation_id, hold.quantity),
        updated_at_ms=now_ms,
    )


def confirm_hold(
    inventory: EventInventory | None,
    hold: Hold | None,
    status: RequestStatus | None,
    payment: Payment,
    *,
    now_ms: int,
) -> SagaResult:
    """Apply a captured payment.

    ``hold`` is the reservation's claim as stored: live, or sold.

    - already confirmed, or already sent for refund -> ``DUPLICATE``;
    - claim already sold but the status not final (a crash stored the batch's claims but not
      its records) -> ``CONFIRMED`` again with the same ticket ids; nothing counted twice
      (the counters are recounted from the claims);
    - live hold (``expires_at_ms > now_ms``) -> ``CONFIRMED``: ``held -= q``, ``sold += q``,
      ticket ids ``uuid5(reservation_id, i)``, status confirmed;
    - hold expired but not yet released -> ``REFUND_REQUIRED`` and the hold is released
      (status failed/expired);
    - hold gone (expired, declined, never existed) -> ``REFUND_REQUIRED``, nothing sold.

    :raises UnknownEvent: a live hold exists but the event's inventory does not.
    """
    if status is not None and (
        status.refunded
        or (status.status is Status.CONFIRMED and status.reservation_id == payment.reservation_id)
    ):
        return SagaResult(SagaKind.DUPLICATE, inventory, status)
    refund = Refund(
        reservation_id=payment.reservation_id,
        request_id=payment.request_id,
        event_id=payment.event_id,
        amount_cents=payment.amount_cents,
        payment_id=payment.payment_id,
    )
    usable = hold is not None and hold.reservation_id == payment.reservation_id
    if hold is not None and hold.sold:
        if usable and (status is None or not status.is_terminal):
            return SagaResult(SagaKind.CONFIRMED, None, _confirmed(hold, status, now_ms))
        hold, usable = None, False  # a sold claim is never a live hold
    if (
        hold is not None
        and usable
        and hold.expires_at_ms > now_ms
        and (status is None or not status.is_terminal)
    ):
        if inventory is None:
            raise UnknownEvent(
                f"hold {hold.reservation_id!r} belongs to event {hold.event_id!r}, which has "
                "no inventory; rebuild the inventory table from its changelog"
            )
        confirmed = check_inventory(
            replace(
                inventory, held=inventory.held - hold.quantity, sold=inventory.sold + hold.quantity
            )
        )
        new_status = _confirmed(hold, status, now_ms)
        return SagaResult(SagaKind.CONFIRMED, confirmed, new_status, removed_hold=hold)
    if hold is not None and usable and (status is None or not status.is_terminal):
        released = _release_counts(inventory, hold)
        base = status if status is not None else status_from_hold(hold)
        new_status = base.evolve(
            status=Status.FAILED, reason=Reason.EXPIRED, updated_at_ms=now_ms, refunded=True
        )
        return SagaResult(
            SagaKind.REFUND_REQUIRED,
            released,
            new_status,
            removed_hold=hold,
            user_tickets_delta=-hold.quantity,
            refund=refund,
        )
    new_status = None
    if status is not None:
        if status.is_terminal:
            new_status = status.evolve(refunded=True, updated_at_ms=now_ms)
        else:
            new_status = status.evolve(
                status=Status.FAILED, reason=Reason.EXPIRED, updated_at_ms=now_ms, refunded=True
            )
    return SagaResult(SagaKind.REFUND_REQUIRED, inventory, new_status, refund=refund)


def release_hold(
    inventory: EventInventory | None,
    hold: Hold | None,
    status: RequestStatus | None,
    reason: Reason,
    *,
    now_ms: int,
) -> SagaResult:
    """Give held seats back: payment declined or hold expired.

    - request already final (confirmed, failed, rejected) -> ``DUPLICATE``;
    - hold present -> ``RELEASED``: ``held -= q``, user count ``-q``, status failed/``reason``;
    - hold already deleted but status not final (a crash between writes) -> ``RELEASED`` with
      only the status written;
    - nothing known -> ``DUPLICATE``.

    :raises InvalidRequest: ``reason`` is not a release reason (programming error).
    :raises UnknownEvent: a hold exists but the event's inventory does not.
    """
    if reason not in RELEASE_REASONS:
        raise InvalidRequest(
            f"release reason must be one of {sorted(r.value for r in RELEASE_REASONS)}, "
            f"got {reason!r}"
        )
    if status is not None and status.is_terminal:
        return SagaResult(SagaKind.DUPLICATE, inventory, status)
    if hold is None:
        if status is None:
            return SagaResult(SagaKind.DUPLICATE, inventory, None)
        new_status = status.evolve(status=Status.FAILED, reason=reason, updated_at_ms=now_ms)
        return SagaResult(SagaKind.RELEASED, inventory, new_status)
    released = _release_counts(inventory, hold)
    base = status if status is not None else status_from_hold(hold)
    new_status = base.evolve(status=Status.FAILED, reason=reason, updated_at_ms=now_ms)
    return SagaResult(
        SagaKind.RELEASED,
        released,
        new_status,
        removed_hold=hold,
        user_tickets_delta=-hold.quantity,
    )


def expire_holds(holds: Iterable[Hold], now_ms: int) -> list[Hold]:
    """The holds due for release at ``now_ms`` (``expires_at_ms <= now_ms``), oldest first.

    Apply each with ``release_hold(..., Reason.EXPIRED, now_ms=now_ms)``.
    """
    due = [hold for hold in holds if hold.expires_at_ms <= now_ms]
    due.sort(key=lambda hold: (hold.expires_at_ms, hold.reservation_id))
    return due
