"""The inventory side of the payment saga: captures sell seats, declines release them.

:class:`SagaInventoryProcessor` extends :class:`~eventpro.agents.processing.InventoryProcessor`
with the records of the ``payments`` topic (co-partitioned with ``ticket-requests``, keyed by
event_id, so the same single writer applies them):

- ``PaymentCaptured`` -> :func:`~eventpro.domain.confirm_hold`: seats sold and
  ``OrderConfirmed`` (topic ``orders``) with ticket ids; if the hold already expired or is
  gone, the compensation ``RefundRequested`` (and ``SeatsReleased`` if the hold was still
  there), so a late capture never sells a seat over capacity;
- ``PaymentDeclined`` -> :func:`~eventpro.domain.release_hold`: ``SeatsReleased``, request
  failed;
- ``RefundIssued`` closes the compensation (nothing to write).

Table writes follow :mod:`eventpro.domain.saga`'s order (inventory, user count, hold, status
last). A redelivered record writes nothing and re-emits the outcome with the same envelope id.
"""

from __future__ import annotations

import logging

from eventpro.agents.processing import Coordinates, InventoryProcessor, Outgoing, outcome_event_id
from eventpro.domain import (
    Hold,
    Reason,
    RequestStatus,
    SagaKind,
    SagaResult,
    Status,
    adjust_user_tickets,
    confirm_hold,
    release_hold,
)
from eventpro.schemas import (
    Envelope,
    EventData,
    OrderConfirmed,
    PaymentCaptured,
    PaymentDeclined,
    RefundIssued,
    RefundRequested,
    SeatsReleased,
)
from eventpro.topics import ORDERS, RESERVATIONS

__all__ = ("SOURCE", "SagaInventoryProcessor")

logger = logging.getLogger(__name__)

SOURCE = "eventpro-inventory"


class SagaInventoryProcessor(InventoryProcessor):
    """The inventory processor plus the payment saga's inventory steps."""

    def handle(self, envelope: Envelope, where: Coordinates) -> list[Outgoing]:
        """Apply one record of ``ticket-requests``, ``inventory-ticks`` or ``payments``."""
        data = envelope.data
        if isinstance(data, PaymentCaptured):
            self._check_partition(data.event_id, where)
            return self.on_payment_captured(envelope, data)
        if isinstance(data, PaymentDeclined):
            self._check_partition(data.event_id, where)
            return self.on_payment_declined(envelope, data)
        if isinstance(data, RefundIssued):
            logger.info(
                "refund %s of reservation %s issued (%d cents) correlation_id=%s",
                data.refund_id,
                data.reservation_id,
                data.amount_cents,
                envelope.correlation_id,
            )
            return []
        return super().handle(envelope, where)

    def on_payment_captured(self, envelope: Envelope, data: PaymentCaptured) -> list[Outgoing]:
        """Sell the held seats, or send the capture back for refund if the hold is gone."""
        hold = self.state.claim(data.reservation_id)
        status = self.state.status(data.event_id, data.request_id)
        now_ms = self.clock_ms()
        result = confirm_hold(
            self.state.inventory(data.event_id), hold, status, data.to_payment(), now_ms=now_ms
        )
        if result.kind is SagaKind.DUPLICATE:
            return self._replay_capture(envelope, data, status)
        self._write(result, hold, data.event_id)
        self._remember(f"capture/{data.reservation_id}")
        out: list[Outgoing] = []
        if result.kind is SagaKind.CONFIRMED and hold is not None and result.status is not None:
            order = OrderConfirmed.from_hold(hold, result.status)
            out.append(self._order(envelope, order))
            logger.info(
                "request %s confirmed: %d seats sold of event %s correlation_id=%s causation_id=%s",
                data.request_id,
                hold.quantity,
                data.event_id,
                envelope.correlation_id,
                envelope.event_id,
            )
            return out
        if result.seats_released and result.status is not None:
            out.append(self._released(envelope, result.status))
        if result.refund is not None:
            out.append(self._refund(envelope, RefundRequested.from_refund(result.refund)))
            logger.warning(
                "capture of reservation %s arrived after its hold expired: refund requested "
                "correlation_id=%s causation_id=%s",
                data.reservation_id,
                envelope.correlation_id,
                envelope.event_id,
            )
        return out

    def on_payment_declined(self, envelope: Envelope, data: PaymentDeclined) -> list[Outgoing]:
        """Give the held seats back; the request fails with ``payment_declined``."""
        hold = self.state.hold(data.reservation_id)
        status = self.state.status(data.event_id, data.request_id)
        result = release_hold(
            self.state.inventory(data.event_id),
            hold,
            status,
            Reason.PAYMENT_DECLINED,
            now_ms=self.clock_ms(),
        )
        if result.kind is SagaKind.DUPLICATE:
            if (
                not self._emitted_here(f"decline/{data.reservation_id}")
                and status is not None
                and status.status is Status.FAILED
                and status.reservation_id == data.reservation_id
            ):
                return [self._released(envelope, status)]
            return []
        self._write(result, hold, data.event_id)
        self._remember(f"decline/{data.reservation_id}")
        if result.status is None or not result.seats_released:
            return []
        logger.info(
            "payment of request %s declined (%s): seats released correlation_id=%s causation_id=%s",
            data.request_id,
            data.code,
            envelope.correlation_id,
            envelope.event_id,
        )
        return [self._released(envelope, result.status)]

    def _write(self, result: SagaResult, hold: Hold | None, event_id: str) -> None:
        if result.inventory is not None:
            self.state.put_inventory(result.inventory)
        if result.user_tickets_delta and hold is not None:
            current = self.state.user_tickets(event_id, hold.user_id)
            self.state.put_user_tickets(
                event_id, hold.user_id, adjust_user_tickets(current, result.user_tickets_delta)
            )
        if result.removed_hold is not None:
            if result.kind is SagaKind.CONFIRMED:
                self.state.mark_sold(result.removed_hold)
            else:
                self.state.delete_hold(result.removed_hold.reservation_id)
        if result.status is not None:
            self.state.put_status(result.status)

    def _replay_capture(
        self, envelope: Envelope, data: PaymentCaptured, status: RequestStatus | None
    ) -> list[Outgoing]:
        if status is None or self._emitted_here(f"capture/{data.reservation_id}"):
            return []
        if status.refunded:
            refund = RefundRequested(
                reservation_id=data.reservation_id,
                request_id=data.request_id,
                event_id=data.event_id,
                amount_cents=data.amount_cents,
                payment_id=data.payment_id,
            )
            return [self._refund(envelope, refund)]
        if status.status is Status.CONFIRMED and status.reservation_id == data.reservation_id:
            order = OrderConfirmed(
                reservation_id=data.reservation_id,
                request_id=data.request_id,
                event_id=data.event_id,
                user_id=data.user_id,
                quantity=status.quantity,
                amount_cents=data.amount_cents,
                ticket_ids=status.ticket_ids,
            )
            return [self._order(envelope, order)]
        return []

    def _order(self, envelope: Envelope, order: OrderConfirmed) -> Outgoing:
        event_id = outcome_event_id(OrderConfirmed.EVENT_TYPE, order.reservation_id)
        return self._emit(ORDERS, envelope, order, order.event_id, event_id)

    def _released(self, envelope: Envelope, status: RequestStatus) -> Outgoing:
        released = SeatsReleased.from_status(status)
        event_id = outcome_event_id(SeatsReleased.EVENT_TYPE, released.reservation_id)
        return self._emit(RESERVATIONS, envelope, released, status.event_id, event_id)

    def _refund(self, envelope: Envelope, refund: RefundRequested) -> Outgoing:
        event_id = outcome_event_id(RefundRequested.EVENT_TYPE, refund.reservation_id)
        return self._emit(RESERVATIONS, envelope, refund, refund.event_id, event_id)

    @staticmethod
    def _emit(topic: str, cause: Envelope, data: EventData, key: str, event_id: str) -> Outgoing:
        envelope = Envelope.new(
            data,
            source=SOURCE,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            event_id=event_id,
        )
        return Outgoing(topic, key, envelope)
