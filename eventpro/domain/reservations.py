"""Deciding a ticket request: deduplicate, validate, check limits, hold seats all-or-nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum

from eventpro.domain.ids import reservation_id_for
from eventpro.domain.model import (
    EventInventory,
    Hold,
    Reason,
    RequestStatus,
    Status,
    TicketRequest,
    check_inventory,
)

__all__ = ("Decision", "DecisionKind", "decide_request")

logger = logging.getLogger(__name__)


class DecisionKind(StrEnum):
    """What :func:`decide_request` decided."""

    RESERVED = "reserved"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one ticket request, with the state to write back.

    - ``RESERVED``: write ``inventory``, ``hold`` (key ``hold.reservation_id``),
      ``user_tickets`` and ``status``; emit ``SeatsReserved``.
    - ``REJECTED``: write ``status`` only; emit ``RequestRejected(status.reason)``.
    - ``DUPLICATE``: write nothing; ``status`` is the earlier outcome. Re-emitting the event
      for that outcome is safe (every consumer deduplicates) and heals a crash that stored the
      state but lost the emitted record.
    """

    kind: DecisionKind
    status: RequestStatus
    inventory: EventInventory | None
    hold: Hold | None
    user_tickets: int

    @property
    def changed(self) -> bool:
        """True when any table must be written."""
        return self.kind is not DecisionKind.DUPLICATE


def _rejected(
    request: TicketRequest,
    reason: Reason,
    inventory: EventInventory | None,
    user_tickets: int,
    now_ms: int,
) -> Decision:
    status = RequestStatus(
        request_id=request.request_id,
        event_id=request.event_id,
        user_id=request.user_id,
        quantity=request.quantity,
        status=Status.REJECTED,
        reason=reason,
        correlation_id=request.correlation_id,
        updated_at_ms=now_ms,
    )
    return Decision(DecisionKind.REJECTED, status, inventory, None, user_tickets)


def decide_request(
    inventory: EventInventory | None,
    user_tickets: int,
    existing: RequestStatus | None,
    request: TicketRequest,
    *,
    now_ms: int,
    hold_ttl_ms: int,
    max_quantity: int,
) -> Decision:
    """Decide ``request`` against the event's counters and the user's ticket count.

    Checks, in order: duplicate (``existing`` is set and not pending) -> invalid quantity
    (``<= 0`` or ``> max_quantity``) -> unknown event -> per-user limit (``user_tickets +
    quantity > max_per_user``) -> sold out (fewer than ``quantity`` seats available; never a
    partial hold) -> reserved, with a hold expiring at ``now_ms + hold_ttl_ms``.

    :param user_tickets: tickets the user already holds or bought for this event.
    :param existing: the stored status for this request_id, if any.
    :raises InventoryInvariantViolated: only if the stored ``inventory`` is already corrupt.
    """
    if existing is not None and existing.status is not Status.PENDING:
        return Decision(DecisionKind.DUPLICATE, existing, inventory, None, user_tickets)
    if request.quantity <= 0 or request.quantity > max_quantity:
        return _rejected(request, Reason.INVALID, inventory, user_tickets, now_ms)
    if inventory is None:
        return _rejected(request, Reason.UNKNOWN_EVENT, None, user_tickets, now_ms)
    check_inventory(inventory)
    if user_tickets + request.quantity > inventory.max_per_user:
        return _rejected(request, Reason.LIMIT_EXCEEDED, inventory, user_tickets, now_ms)
    if request.quantity > inventory.available:
        return _rejected(request, Reason.SOLD_OUT, inventory, user_tickets, now_ms)
    reservation_id = reservation_id_for(request.event_id, request.request_id)
    hold = Hold(
        reservation_id=reservation_id,
        request_id=request.request_id,
        event_id=request.event_id,
        user_id=request.user_id,
        quantity=request.quantity,
        amount_cents=request.quantity * inventory.price_cents,
        expires_at_ms=now_ms + hold_ttl_ms,
    )
    status = RequestStatus(
        request_id=request.request_id,
        event_id=request.event_id,
        user_id=request.user_id,
        quantity=request.quantity,
        status=Status.RESERVED,
        reservation_id=reservation_id,
        correlation_id=request.correlation_id,
        updated_at_ms=now_ms,
    )
    new_inventory = check_inventory(replace(inventory, held=inventory.held + request.quantity))
    return Decision(
        DecisionKind.RESERVED, status, new_inventory, hold, user_tickets + request.quantity
    )
