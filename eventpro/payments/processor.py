"""What the payments agent does with one decoded ``reservations`` record.

``SeatsReserved`` -> charge (idempotency key = reservation_id) -> ``PaymentCaptured`` |
``PaymentDeclined``; ``RefundRequested`` -> refund -> ``RefundIssued``. Everything else on the
topic (``RequestRejected``, ``SeatsReleased``) is not for the payments side.

The processor keeps no state: the gateway's idempotency makes a redelivered record charge
nothing new, and every emitted envelope has a deterministic id (``uuid5`` of the outcome and
the reservation), so a redelivery re-emits the *same* event, which consumers deduplicate.
Transient gateway failures propagate as :class:`~eventpro.payments.TransientPaymentError`
for the agent to route to a retry topic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eventpro.agents.processing import Outgoing, outcome_event_id
from eventpro.payments.gateway import PaymentGateway, with_timeout
from eventpro.schemas import (
    Envelope,
    EventData,
    PaymentCaptured,
    PaymentDeclined,
    RefundIssued,
    RefundRequested,
    SeatsReserved,
)
from eventpro.topics import PAYMENTS

__all__ = ("SOURCE", "PaymentsProcessor")

logger = logging.getLogger(__name__)

SOURCE = "eventpro-payments"
"""The envelope ``source`` of every event the payments agent emits."""


@dataclass(frozen=True, slots=True)
class PaymentsProcessor:
    """Turns reservations into gateway calls and their outcomes.

    :param timeout_seconds: a gateway call taking longer raises
        :class:`~eventpro.payments.PaymentTimeout` (transient).
    """

    gateway: PaymentGateway
    timeout_seconds: float

    async def handle(self, envelope: Envelope) -> list[Outgoing]:
        """Process one record; returns what to emit (nothing for other event types).

        :raises TransientPaymentError: retry the record later.
        :raises PaymentError: the record can never succeed (dead-letter it).
        """
        data = envelope.data
        if isinstance(data, SeatsReserved):
            return [await self.charge(envelope, data)]
        if isinstance(data, RefundRequested):
            return [await self.refund(envelope, data)]
        return []

    @staticmethod
    def handles(envelope: Envelope) -> bool:
        """Whether :meth:`handle` does anything with ``envelope`` (a charge or a refund)."""
        return isinstance(envelope.data, SeatsReserved | RefundRequested)

    async def charge(self, envelope: Envelope, hold: SeatsReserved) -> Outgoing:
        """Charge a hold and say how it went."""
        result = await with_timeout(
            self.gateway.charge(
                idempotency_key=hold.reservation_id,
                amount_cents=hold.amount_cents,
                customer_id=hold.user_id,
                correlation_id=envelope.correlation_id,
            ),
            self.timeout_seconds,
            f"charge of reservation {hold.reservation_id}",
        )
        outcome: EventData
        if result.captured and result.payment_id is not None:
            outcome = PaymentCaptured.from_hold(hold, result.payment_id)
        else:
            outcome = PaymentDeclined.from_hold(hold, result.code or "declined", result.detail)
        logger.info(
            "reservation %s of request %s: payment %s (%d cents) correlation_id=%s causation_id=%s",
            hold.reservation_id,
            hold.request_id,
            result.status.value,
            hold.amount_cents,
            envelope.correlation_id,
            envelope.event_id,
        )
        return self._outgoing(envelope, outcome, hold.event_id, hold.reservation_id)

    async def refund(self, envelope: Envelope, request: RefundRequested) -> Outgoing:
        """Pay a capture back (compensation of a late capture)."""
        result = await with_timeout(
            self.gateway.refund(
                idempotency_key=request.reservation_id,
                payment_id=request.payment_id,
                amount_cents=request.amount_cents,
                correlation_id=envelope.correlation_id,
            ),
            self.timeout_seconds,
            f"refund of reservation {request.reservation_id}",
        )
        issued = RefundIssued(
            reservation_id=request.reservation_id,
            request_id=request.request_id,
            event_id=request.event_id,
            amount_cents=result.amount_cents,
            payment_id=result.payment_id,
            refund_id=result.refund_id,
        )
        logger.info(
            "reservation %s refunded %d cents (%s) correlation_id=%s causation_id=%s",
            request.reservation_id,
            result.amount_cents,
            request.reason,
            envelope.correlation_id,
            envelope.event_id,
        )
        return self._outgoing(envelope, issued, request.event_id, request.reservation_id)

    @staticmethod
    def _outgoing(envelope: Envelope, data: EventData, key: str, reservation_id: str) -> Outgoing:
        caused = Envelope.new(
            data,
            source=SOURCE,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_id=outcome_event_id(data.EVENT_TYPE, reservation_id),
        )
        return Outgoing(PAYMENTS, key, caused)
