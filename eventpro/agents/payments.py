"""The payments agent, its retry agents and the refund path of the saga.

``reservations`` -> :class:`~eventpro.payments.processor.PaymentsProcessor` -> ``payments``:
``SeatsReserved`` is charged (idempotency key = reservation_id) and answered with
``PaymentCaptured`` | ``PaymentDeclined``; ``RefundRequested`` (the inventory's compensation)
is refunded and answered with ``RefundIssued``.

Concurrency: the agent writes no tables, so records need no single-writer ordering; only the
gateway calls of one reservation must stay in order, which :class:`InFlight` guarantees while
running up to ``EVENTPRO_PAYMENTS_MAX_IN_FLIGHT`` calls at once. A slow gateway therefore holds
one slot, not the partition.

Failures never block the partition:

- unreadable record (:class:`~eventpro.schemas.SchemaError`) -> ``dlq`` at once;
- transient gateway error or timeout -> ``retry-1`` / ``retry-2`` / ``retry-3`` with the
  backoff of ``EVENTPRO_RETRY_DELAYS_MS``; one retry agent per retry topic waits until a record
  is due, then runs the same handler; after the last attempt -> ``dlq``
  (``reason=retries_exhausted``);
- permanent gateway error -> ``dlq`` (``reason=payment_error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import faust
from faust.types import EventT

from eventpro.agents.channels import declare_topics, reservations_topic, retry_topics
from eventpro.agents.inflight import InFlight
from eventpro.agents.output import decode_record, handle_then_ack, send, send_raw
from eventpro.app import app
from eventpro.commit_gate import commit_gate
from eventpro.exceptions import EventProError
from eventpro.payments import (
    GatewayOptions,
    PaymentGateway,
    SimulatedGateway,
    TransientPaymentError,
    get_payment_settings,
)
from eventpro.payments.processor import PaymentsProcessor
from eventpro.retry import H_AGENT, RawRecord, dead_letter_record, headers_dict, route_failure
from eventpro.schemas import Envelope, SchemaError

__all__ = (
    "AGENT_NAME",
    "RETRY_HANDLERS",
    "handle_record",
    "inflight",
    "payments_agent",
    "processor",
    "raw_record",
    "set_gateway",
)

logger = logging.getLogger(__name__)

AGENT_NAME = "eventpro.agents.payments"

_payment_settings = get_payment_settings()

processor = PaymentsProcessor(
    SimulatedGateway(GatewayOptions.from_settings(_payment_settings)),
    timeout_seconds=_payment_settings.payment_timeout_seconds,
)
inflight = InFlight(_payment_settings.payments_max_in_flight)


def set_gateway(gateway: PaymentGateway) -> None:
    """Use ``gateway`` for every later charge and refund (a real provider, or a test double)."""
    global processor
    processor = PaymentsProcessor(gateway, timeout_seconds=processor.timeout_seconds)


def _now_ms() -> int:
    return int(time.time() * 1000)


def raw_record(event: EventT) -> RawRecord:
    """The record behind ``event`` as bytes, coordinates and headers."""
    message = event.message
    value = message.value
    key = message.key
    return RawRecord(
        topic=str(message.topic),
        partition=int(message.partition),
        offset=int(message.offset),
        key=key if isinstance(key, bytes | None) else str(key).encode("utf-8"),
        value=value if isinstance(value, bytes) else str(value or "").encode("utf-8"),
        headers=headers_dict(message.headers),
    )


async def handle_record(record: RawRecord, decoded: Envelope | SchemaError | None = None) -> str:
    """Charge or refund one record, or route it to a retry topic or the DLQ.

    ``decoded``: the record's :func:`decode_record`, if the caller has it already.
    Returns a short label of what happened (``PaymentCaptured``, ``retry-1``, ``dlq``, ...).
    """
    envelope = decode_record(record) if decoded is None else decoded
    if isinstance(envelope, SchemaError):
        exc = envelope
        letter = dead_letter_record(
            record, reason=exc.reason.value, error=str(exc), agent=AGENT_NAME, attempts=1
        )
        logger.warning("record %s sent to the DLQ: %s", record, exc)
        await send_raw([letter])
        return "dlq"
    correlation_id = envelope.correlation_id
    try:
        outgoing = await processor.handle(envelope)
    except TransientPaymentError as exc:
        routed = route_failure(
            record,
            str(exc),
            agent=AGENT_NAME,
            now_ms=_now_ms(),
            correlation_id=correlation_id,
            delays_ms=_payment_settings.retry_delays_ms,
        )
        logger.warning(
            "%s %s failed transiently (attempt %d): %s; sent to %s correlation_id=%s",
            record,
            envelope.event_type,
            record.attempts + 1,
            exc,
            routed.topic,
            correlation_id,
        )
        await send_raw([routed])
        return routed.topic
    except EventProError as exc:
        letter = dead_letter_record(
            record,
            reason="payment_error",
            error=str(exc),
            agent=AGENT_NAME,
            attempts=record.attempts + 1,
            correlation_id=correlation_id,
        )
        logger.error("%s sent to the DLQ: %s correlation_id=%s", record, exc, correlation_id)
        await send_raw([letter])
        return "dlq"
    await send(outgoing)
    return outgoing[0].envelope.event_type if outgoing else "ignored"


async def _process(event: EventT, record: RawRecord, decoded: Envelope | SchemaError) -> None:
    await handle_then_ack(
        event,
        record,
        lambda: handle_record(record, decoded),
        agent=AGENT_NAME,
        attempts=record.attempts + 1,
    )


def _order_key(record: RawRecord, decoded: Envelope | SchemaError) -> str:
    """Serialise per reservation: its id is the only thing two records must agree on."""
    data = None if isinstance(decoded, SchemaError) else decoded.data
    return str(getattr(data, "reservation_id", None) or f"{record.topic}/{record.partition}")


async def submit(event: EventT) -> None:
    """Hand one record to the in-flight pool (returns once a slot is free).

    A record of an event type payments ignores (most of ``reservations``: rejections,
    releases) has nothing to do or send, so it is acknowledged at once, without a task.
    """
    record = raw_record(event)
    decoded = decode_record(record)
    if not isinstance(decoded, SchemaError) and not processor.handles(decoded):
        event.ack()
        return
    await inflight.submit(_order_key(record, decoded), lambda: _process(event, record, decoded))


@app.agent(reservations_topic, name=AGENT_NAME, concurrency=1)
async def payments_agent(stream: faust.StreamT[bytes]) -> None:
    """Charge every hold and refund every late capture, many gateway calls at once."""
    await declare_topics()
    async for event in stream.noack().events():
        await submit(event)
    await inflight.drain()


RETRY_HANDLERS: dict[str, Callable[[EventT], Awaitable[None]]] = {AGENT_NAME: submit}
"""Agent name (the ``eventpro-agent`` header of a retried record) -> how to retry it."""


def _retry_agent(logical: str) -> None:
    async def retry(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.noack().events():
            record = raw_record(event)
            wait_ms = record.due_ms - _now_ms()
            if wait_ms > 0:
                await asyncio.sleep(wait_ms / 1000.0)
            agent = record.headers.get(H_AGENT, b"").decode("utf-8", "replace")
            handler = RETRY_HANDLERS.get(agent)
            if handler is None:
                logger.error("%s names unknown agent %r; sending it to the DLQ", record, agent)
                async with commit_gate.processing():
                    await send_raw(
                        [
                            dead_letter_record(
                                record,
                                reason="unknown_retry_agent",
                                error=f"no retry handler for agent {agent!r}",
                                agent=f"eventpro.agents.retry.{logical}",
                                attempts=record.attempts,
                            )
                        ]
                    )
                    event.ack()
                continue
            await handler(event)
        await inflight.drain()

    retry.__name__ = retry.__qualname__ = f"retry_{logical.replace('-', '_')}"
    app.agent(retry_topics[logical], name=f"eventpro.agents.retry.{logical}", concurrency=1)(retry)


for _logical in retry_topics:
    _retry_agent(_logical)
