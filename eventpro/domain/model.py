"""Immutable values of the ticketing domain: inventories, holds, request statuses, commands.

Everything is a frozen dataclass or a ``StrEnum`` (so it serialises as a plain string). The
values that live in tables have ``to_dict()``/``from_dict()`` with JSON-ready primitives only,
so the table layer can store them with any codec. Times are integers in epoch milliseconds.

State is split the way tables store it, so one change rewrites one small value:
:class:`EventInventory` (counters, key ``event_id``), :class:`Hold` (key ``reservation_id``),
:class:`RequestStatus` (key :func:`eventpro.domain.ids.request_key`) and the per-user ticket
count, a plain ``int`` (key :func:`eventpro.domain.ids.user_key`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from eventpro.domain.errors import InventoryInvariantViolated

__all__ = (
    "REJECTION_REASONS",
    "RELEASE_REASONS",
    "TERMINAL_STATUSES",
    "CreateEvent",
    "EventInventory",
    "Hold",
    "Payment",
    "Reason",
    "RequestStatus",
    "Status",
    "TicketRequest",
    "check_inventory",
)

logger = logging.getLogger(__name__)


class Status(StrEnum):
    """Where a ticket request stands; ``confirmed``, ``rejected`` and ``failed`` are final."""

    PENDING = "pending"
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """True when the request will never change status again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[Status] = frozenset({Status.CONFIRMED, Status.REJECTED, Status.FAILED})


class Reason(StrEnum):
    """Why a request was rejected (before a hold) or failed (after a hold)."""

    INVALID = "invalid"
    UNKNOWN_EVENT = "unknown_event"
    LIMIT_EXCEEDED = "limit_exceeded"
    SOLD_OUT = "sold_out"
    PAYMENT_DECLINED = "payment_declined"
    EXPIRED = "expired"


REJECTION_REASONS: frozenset[Reason] = frozenset(
    {Reason.INVALID, Reason.UNKNOWN_EVENT, Reason.LIMIT_EXCEEDED, Reason.SOLD_OUT}
)
RELEASE_REASONS: frozenset[Reason] = frozenset({Reason.PAYMENT_DECLINED, Reason.EXPIRED})


@dataclass(frozen=True, slots=True)
class CreateEvent:
    """Command: put an event on sale (from ``EventCreated`` on the ticket-requests topic)."""

    event_id: str
    name: str
    capacity: int
    price_cents: int
    max_per_user: int


@dataclass(frozen=True, slots=True)
class EventInventory:
    """Seat counters of one event; the only value the inventory table stores per event_id.

    ``available = capacity - held - sold``; holds themselves are separate :class:`Hold` values.
    """

    event_id: str
    name: str
    capacity: int
    price_cents: int
    max_per_user: int
    held: int = 0
    sold: int = 0
    created_at_ms: int = 0

    @property
    def available(self) -> int:
        """Seats neither held nor sold."""
        return self.capacity - self.held - self.sold

    def same_spec(self, cmd: CreateEvent) -> bool:
        """True when ``cmd`` would create exactly this event (idempotent re-create)."""
        return (
            self.name == cmd.name
            and self.capacity == cmd.capacity
            and self.price_cents == cmd.price_cents
            and self.max_per_user == cmd.max_per_user
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (used by table codecs and the HTTP API)."""
        return {
            "event_id": self.event_id,
            "name": self.name,
            "capacity": self.capacity,
            "price_cents": self.price_cents,
            "max_per_user": self.max_per_user,
            "held": self.held,
            "sold": self.sold,
            "available": self.available,
            "created_at_ms": self.created_at_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventInventory:
        """Inverse of :meth:`to_dict` (extra keys such as ``available`` are ignored)."""
        return cls(
            event_id=data["event_id"],
            name=data["name"],
            capacity=int(data["capacity"]),
            price_cents=int(data["price_cents"]),
            max_per_user=int(data["max_per_user"]),
            held=int(data.get("held", 0)),
            sold=int(data.get("sold", 0)),
            created_at_ms=int(data.get("created_at_ms", 0)),
        )


def check_inventory(inv: EventInventory) -> EventInventory:
    """Return ``inv`` unchanged, or raise if its counters are impossible.

    :raises InventoryInvariantViolated: ``held < 0``, ``sold < 0`` or
        ``held + sold > capacity``.
    """
    if inv.held < 0 or inv.sold < 0 or inv.held + inv.sold > inv.capacity:
        raise InventoryInvariantViolated(
            f"event {inv.event_id!r}: held={inv.held} sold={inv.sold} capacity={inv.capacity} "
            "breaks 0 <= held, 0 <= sold, held + sold <= capacity; stop the worker, keep its "
            "data directory and rebuild the inventory table from its changelog"
        )
    return inv


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """Command: a buyer asks for ``quantity`` seats of one event (from ``TicketRequested``).

    Not validated on construction: :func:`eventpro.domain.decide_request` turns bad values into
    a ``rejected/invalid`` outcome, so a bad request still gets an answer.
    """

    request_id: str
    event_id: str
    user_id: str
    quantity: int
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class Hold:
    """Seats reserved for one request until ``expires_at_ms``, waiting for payment.

    Stored under ``reservation_id``: the seat claim the event's counters are derived from
    after a crash (:mod:`eventpro.tables.reconcile`). Deleted when released or expired;
    kept with ``sold=True`` once confirmed, so the sold seats stay countable.
    """

    reservation_id: str
    request_id: str
    event_id: str
    user_id: str
    quantity: int
    amount_cents: int
    expires_at_ms: int
    sold: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "reservation_id": self.reservation_id,
            "request_id": self.request_id,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "quantity": self.quantity,
            "amount_cents": self.amount_cents,
            "expires_at_ms": self.expires_at_ms,
            "sold": self.sold,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hold:
        """Inverse of :meth:`to_dict`."""
        return cls(
            reservation_id=data["reservation_id"],
            request_id=data["request_id"],
            event_id=data["event_id"],
            user_id=data["user_id"],
            quantity=int(data["quantity"]),
            amount_cents=int(data["amount_cents"]),
            expires_at_ms=int(data["expires_at_ms"]),
            sold=bool(data.get("sold", False)),
        )


@dataclass(frozen=True, slots=True)
class Payment:
    """A captured payment as the inventory side sees it (from ``PaymentCaptured``)."""

    reservation_id: str
    request_id: str
    event_id: str
    amount_cents: int
    payment_id: str


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """The answer to ``GET .../requests/{request_id}`` and the deduplication record.

    ``refunded`` is set once a capture that could not be honoured was sent for refund, so a
    redelivered capture does not refund twice.
    """

    request_id: str
    event_id: str
    user_id: str
    quantity: int
    status: Status
    reason: Reason | None = None
    reservation_id: str | None = None
    ticket_ids: tuple[str, ...] = ()
    correlation_id: str = ""
    updated_at_ms: int = 0
    refunded: bool = False

    @property
    def is_terminal(self) -> bool:
        """True for confirmed, rejected and failed."""
        return self.status.is_terminal

    @classmethod
    def pending(cls, request: TicketRequest, *, now_ms: int) -> RequestStatus:
        """What the API shows for an accepted request the inventory has not decided yet."""
        return cls(
            request_id=request.request_id,
            event_id=request.event_id,
            user_id=request.user_id,
            quantity=request.quantity,
            status=Status.PENDING,
            correlation_id=request.correlation_id,
            updated_at_ms=now_ms,
        )

    def evolve(self, **changes: Any) -> RequestStatus:
        """A copy with ``changes`` applied (the value itself never changes)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their string values)."""
        return {
            "request_id": self.request_id,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "quantity": self.quantity,
            "status": self.status.value,
            "reason": self.reason.value if self.reason is not None else None,
            "reservation_id": self.reservation_id,
            "ticket_ids": list(self.ticket_ids),
            "correlation_id": self.correlation_id,
            "updated_at_ms": self.updated_at_ms,
            "refunded": self.refunded,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestStatus:
        """Inverse of :meth:`to_dict`."""
        reason = data.get("reason")
        return cls(
            request_id=data["request_id"],
            event_id=data["event_id"],
            user_id=data["user_id"],
            quantity=int(data["quantity"]),
            status=Status(data["status"]),
            reason=Reason(reason) if reason is not None else None,
            reservation_id=data.get("reservation_id"),
            ticket_ids=tuple(data.get("ticket_ids") or ()),
            correlation_id=data.get("correlation_id") or "",
            updated_at_ms=int(data.get("updated_at_ms", 0)),
            refunded=bool(data.get("refunded", False)),
        )
