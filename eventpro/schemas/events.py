"""Payload models of every event on EventPro's topics, with converters to and from the domain.

Each model is the ``data`` of an :class:`~eventpro.schemas.Envelope`. The ``from_*``/``to_*``
helpers keep the agents one line per event: ``SeatsReserved.from_hold(decision.hold)``.
"""

from __future__ import annotations

import base64
import logging
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, field_validator

from eventpro.domain import (
    REJECTION_REASONS,
    RELEASE_REASONS,
    CreateEvent,
    Hold,
    Payment,
    Reason,
    Refund,
    RequestStatus,
    Status,
    TicketRequest,
)
from eventpro.schemas.envelope import EventData, Id

__all__ = (
    "EVENT_MODELS",
    "DeadLetter",
    "EventCreated",
    "HoldExpiryTick",
    "NotificationSent",
    "OrderConfirmed",
    "PaymentCaptured",
    "PaymentDeclined",
    "RefundIssued",
    "RefundRequested",
    "RequestRejected",
    "SeatsReleased",
    "SeatsReserved",
    "TicketRequested",
    "TicketRequestedV1",
)

logger = logging.getLogger(__name__)

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Count = Annotated[int, Field(ge=0)]


class EventCreated(EventData):
    """Catalog command: put an event on sale. Topic ``ticket-requests``, key ``event_id``.

    Sent on the same topic as the requests so the partition owning the event sees its
    creation before any request produced after it.
    """

    EVENT_TYPE: ClassVar[str] = "EventCreated"

    event_id: Id
    name: Name
    capacity: int = Field(ge=1, le=10_000_000)
    price_cents: Count
    max_per_user: int = Field(ge=1)

    def to_command(self) -> CreateEvent:
        """The domain command."""
        return CreateEvent(
            event_id=self.event_id,
            name=self.name,
            capacity=self.capacity,
            price_cents=self.price_cents,
            max_per_user=self.max_per_user,
        )


class TicketRequested(EventData):
    """A buyer asks for seats (version 2). Topic ``ticket-requests``, key ``event_id``.

    ``quantity`` is any integer on the wire: out-of-range values are answered with
    ``RequestRejected(reason="invalid")`` rather than dropped.
    """

    EVENT_TYPE: ClassVar[str] = "TicketRequested"
    SCHEMA_VERSION: ClassVar[int] = 2

    request_id: Id
    event_id: Id
    user_id: Id
    quantity: int

    def to_command(self, correlation_id: str = "") -> TicketRequest:
        """The domain command, carrying the saga's correlation id."""
        return TicketRequest(
            request_id=self.request_id,
            event_id=self.event_id,
            user_id=self.user_id,
            quantity=self.quantity,
            correlation_id=correlation_id,
        )


class TicketRequestedV1(EventData):
    """Version 1 of TicketRequested: ``{"event", "user", "qty", "request_id"?}``.

    Read only: :mod:`eventpro.schemas.upcasting` turns it into version 2 (a missing
    ``request_id`` becomes the envelope's ``event_id``, so a resent v1 record deduplicates).
    """

    EVENT_TYPE: ClassVar[str] = "TicketRequested"
    SCHEMA_VERSION: ClassVar[int] = 1

    event: Id
    user: Id
    qty: int
    request_id: Id | None = None


class SeatsReserved(EventData):
    """Seats are held for a request until ``expires_at_ms``. Topic ``reservations``."""

    EVENT_TYPE: ClassVar[str] = "SeatsReserved"

    reservation_id: Id
    request_id: Id
    event_id: Id
    user_id: Id
    quantity: int = Field(ge=1)
    amount_cents: Count
    expires_at_ms: int

    @classmethod
    def from_hold(cls, hold: Hold) -> SeatsReserved:
        """From a domain hold."""
        return cls(**hold.to_dict())

    def to_hold(self) -> Hold:
        """Back to the domain hold."""
        return Hold(
            reservation_id=self.reservation_id,
            request_id=self.request_id,
            event_id=self.event_id,
            user_id=self.user_id,
            quantity=self.quantity,
            amount_cents=self.amount_cents,
            expires_at_ms=self.expires_at_ms,
        )


class RequestRejected(EventData):
    """A request got no seats (terminal). Topic ``reservations``.

    ``reason``: ``sold_out`` | ``unknown_event`` | ``limit_exceeded`` | ``invalid``.
    """

    EVENT_TYPE: ClassVar[str] = "RequestRejected"

    request_id: Id
    event_id: Id
    user_id: Id
    quantity: int
    reason: Reason
    detail: str = ""

    @field_validator("reason")
    @classmethod
    def _rejection_reason(cls, value: Reason) -> Reason:
        if value not in REJECTION_REASONS:
            raise ValueError(f"{value.value!r} is not a rejection reason")
        return value

    @classmethod
    def from_status(cls, status: RequestStatus, detail: str = "") -> RequestRejected:
        """From a rejected request status."""
        return cls(
            request_id=status.request_id,
            event_id=status.event_id,
            user_id=status.user_id,
            quantity=status.quantity,
            reason=status.reason or Reason.INVALID,
            detail=detail,
        )


class PaymentCaptured(EventData):
    """The gateway took the money for a hold. Topic ``payments``, key ``event_id``."""

    EVENT_TYPE: ClassVar[str] = "PaymentCaptured"

    reservation_id: Id
    request_id: Id
    event_id: Id
    user_id: Id
    amount_cents: Count
    payment_id: Id

    @classmethod
    def from_hold(cls, hold: Hold | SeatsReserved, payment_id: str) -> PaymentCaptured:
        """The capture of ``hold`` with the gateway's payment id."""
        return cls(
            reservation_id=hold.reservation_id,
            request_id=hold.request_id,
            event_id=hold.event_id,
            user_id=hold.user_id,
            amount_cents=hold.amount_cents,
            payment_id=payment_id,
        )

    def to_payment(self) -> Payment:
        """The domain payment."""
        return Payment(
            reservation_id=self.reservation_id,
            request_id=self.request_id,
            event_id=self.event_id,
            amount_cents=self.amount_cents,
            payment_id=self.payment_id,
        )


class PaymentDeclined(EventData):
    """The gateway refused the charge (final). Topic ``payments``, key ``event_id``."""

    EVENT_TYPE: ClassVar[str] = "PaymentDeclined"

    reservation_id: Id
    request_id: Id
    event_id: Id
    user_id: Id
    amount_cents: Count
    code: str = "declined"
    detail: str = ""

    @classmethod
    def from_hold(
        cls, hold: Hold | SeatsReserved, code: str = "declined", detail: str = ""
    ) -> PaymentDeclined:
        """The decline of ``hold``."""
        return cls(
            reservation_id=hold.reservation_id,
            request_id=hold.request_id,
            event_id=hold.event_id,
            user_id=hold.user_id,
            amount_cents=hold.amount_cents,
            code=code,
            detail=detail,
        )


class OrderConfirmed(EventData):
    """Seats sold and tickets issued (terminal). Topic ``orders``."""

    EVENT_TYPE: ClassVar[str] = "OrderConfirmed"

    reservation_id: Id
    request_id: Id
    event_id: Id
    user_id: Id
    quantity: int = Field(ge=1)
    amount_cents: Count
    ticket_ids: tuple[str, ...]

    @classmethod
    def from_hold(cls, hold: Hold, status: RequestStatus) -> OrderConfirmed:
        """From the confirmed hold and the confirmed status (which has the ticket ids)."""
        return cls(
            reservation_id=hold.reservation_id,
            request_id=hold.request_id,
            event_id=hold.event_id,
            user_id=hold.user_id,
            quantity=hold.quantity,
            amount_cents=hold.amount_cents,
            ticket_ids=status.ticket_ids,
        )


class SeatsReleased(EventData):
    """Held seats are back on sale; the request failed (terminal). Topic ``reservations``.

    ``reason``: ``payment_declined`` | ``expired``.
    """

    EVENT_TYPE: ClassVar[str] = "SeatsReleased"

    reservation_id: Id
    request_id: Id
    event_id: Id
    user_id: Id
    quantity: int = Field(ge=1)
    reason: Reason

    @field_validator("reason")
    @classmethod
    def _release_reason(cls, value: Reason) -> Reason:
        if value not in RELEASE_REASONS:
            raise ValueError(f"{value.value!r} is not a release reason")
        return value

    @classmethod
    def from_status(cls, status: RequestStatus) -> SeatsReleased:
        """From a failed request status (which carries reservation id and reason)."""
        return cls(
            reservation_id=status.reservation_id or "",
            request_id=status.request_id,
            event_id=status.event_id,
            user_id=status.user_id,
            quantity=status.quantity,
            reason=status.reason or Reason.EXPIRED,
        )


class RefundRequested(EventData):
    """Compensation: a capture bought nothing; the payments side must refund it.

    Topic ``reservations`` (the payments agent's input). The gateway refund uses
    ``reservation_id`` as idempotency key.
    """

    EVENT_TYPE: ClassVar[str] = "RefundRequested"

    reservation_id: Id
    request_id: Id
    event_id: Id
    amount_cents: Count
    payment_id: Id
    reason: str = "hold_expired"

    @classmethod
    def from_refund(cls, refund: Refund, reason: str = "hold_expired") -> RefundRequested:
        """From the domain refund."""
        return cls(
            reservation_id=refund.reservation_id,
            request_id=refund.request_id,
            event_id=refund.event_id,
            amount_cents=refund.amount_cents,
            payment_id=refund.payment_id,
            reason=reason,
        )


class RefundIssued(EventData):
    """The gateway paid a refund back. Topic ``payments``."""

    EVENT_TYPE: ClassVar[str] = "RefundIssued"

    reservation_id: Id
    request_id: Id
    event_id: Id
    amount_cents: Count
    payment_id: Id
    refund_id: Id


class HoldExpiryTick(EventData):
    """The leader's tick asking one partition to release its expired holds.

    Topic ``inventory-ticks``, produced to an explicit ``partition`` with no key.
    """

    EVENT_TYPE: ClassVar[str] = "HoldExpiryTick"

    partition: int = Field(ge=0)
    now_ms: int


class NotificationSent(EventData):
    """One notification per terminal outcome. Topic ``notifications``."""

    EVENT_TYPE: ClassVar[str] = "NotificationSent"

    notification_id: Id
    request_id: Id
    event_id: Id
    user_id: Id
    channel: str
    status: Status
    reason: Reason | None = None
    ticket_ids: tuple[str, ...] = ()


class DeadLetter(EventData):
    """A record no agent could process. Topic ``dlq``; replay sends ``original`` back.

    ``key_b64``/``original_b64`` are the record's raw key and value, base64-encoded.
    """

    EVENT_TYPE: ClassVar[str] = "DeadLetter"

    reason: str
    error: str
    attempts: int = Field(ge=0)
    agent: str
    correlation_id: str | None = None
    topic: str
    partition: int
    offset: int
    key_b64: str | None = None
    original_b64: str

    @classmethod
    def from_record(
        cls,
        *,
        reason: str,
        error: str,
        attempts: int,
        agent: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        correlation_id: str | None = None,
    ) -> DeadLetter:
        """Build from the raw record's coordinates and bytes."""
        return cls(
            reason=reason,
            error=error,
            attempts=attempts,
            agent=agent,
            correlation_id=correlation_id,
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=base64.b64encode(key).decode("ascii") if key is not None else None,
            original_b64=base64.b64encode(value or b"").decode("ascii"),
        )

    @property
    def partition_key(self) -> str | None:
        """Dead letters are not keyed."""
        return None

    def original(self) -> bytes:
        """The original record value."""
        return base64.b64decode(self.original_b64)

    def original_key(self) -> bytes | None:
        """The original record key."""
        return base64.b64decode(self.key_b64) if self.key_b64 is not None else None


EVENT_MODELS: tuple[type[EventData], ...] = (
    EventCreated,
    TicketRequested,
    SeatsReserved,
    RequestRejected,
    PaymentCaptured,
    PaymentDeclined,
    OrderConfirmed,
    SeatsReleased,
    RefundRequested,
    RefundIssued,
    HoldExpiryTick,
    NotificationSent,
    DeadLetter,
)
"""Every current event model; ``decode`` accepts exactly these event types."""
