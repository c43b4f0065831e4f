"""The inventory agent: the single writer of an event's seats, one partition at a time.

It reads ``ticket-requests`` (``TicketRequested`` and ``EventCreated``, keyed by event_id),
``inventory-ticks`` (``HoldExpiryTick``, one per partition from the leader's timer) and
``payments`` (``PaymentCaptured`` / ``PaymentDeclined`` / ``RefundIssued``, keyed by event_id),
and for each record: decode -> :class:`~eventpro.agents.saga.SagaInventoryProcessor` (pure
domain decision + table writes) -> emit outcomes to ``reservations`` and ``orders`` keyed by
event_id.

Concurrency is 1: tables may only be written by one actor per partition. A record that cannot
be decoded or applied goes to the ``dlq`` topic with its reason, error, coordinates and
original bytes, and processing continues; an agent never crashes on a record.

Hold expiry: a timer may not write partitioned tables (it runs outside any partition's
stream), so the leader's timer only sends a tick to every partition of ``inventory-ticks``;
the agent that owns the partition releases the due holds with ordinary table writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import faust
from faust.types import EventT

from eventpro.agents.channels import declare_topics, inventory_input, ticks_topic, topic_for
from eventpro.agents.processing import (
    Coordinates,
    Outgoing,
    RecordRefused,
)
from eventpro.agents.saga import SagaInventoryProcessor
from eventpro.app import app
from eventpro.exceptions import EventProError
from eventpro.schemas import DeadLetter, Envelope, HoldExpiryTick, SchemaError, decode, encode
from eventpro.settings import get_settings
from eventpro.tables import HoldExpiryIndex, state
from eventpro.topics import DLQ

__all__ = (
    "AGENT_NAME",
    "dead_letter",
    "emit",
    "expiry_index",
    "inventory_agent",
    "processor",
    "send_expiry_ticks",
)

logger = logging.getLogger(__name__)

AGENT_NAME = "eventpro.agents.inventory"

_settings = get_settings()


def _now_ms() -> int:
    return int(time.time() * 1000)


expiry_index = HoldExpiryIndex(_settings.partitions)
processor = SagaInventoryProcessor(
    state,
    expiry_index,
    partitions=_settings.partitions,
    hold_ttl_ms=int(_settings.hold_ttl_seconds * 1000),
    max_quantity=_settings.max_quantity,
    clock_ms=_now_ms,
)


async def emit(records: Iterable[Outgoing]) -> None:
    """Produce ``records`` (buffered; Faust flushes them before committing the source offset)."""
    for record in records:
        await topic_for(record.topic).send(
            key=record.key.encode("utf-8") if record.key is not None else None,
            value=encode(record.envelope),
            partition=record.partition,
        )


async def dead_letter(
    event: EventT, where: Coordinates, reason: str, error: str, correlation_id: str | None = None
) -> None:
    """Send the record behind ``event`` to the dead-letter topic, with why it was refused."""
    message = event.message
    letter = DeadLetter.from_record(
        reason=reason,
        error=error,
        attempts=1,
        agent=AGENT_NAME,
        topic=where.topic,
        partition=where.partition,
        offset=where.offset,
        key=_as_bytes(message.key),
        value=_as_bytes(message.value),
        correlation_id=correlation_id,
    )
    logger.warning(
        "record %s sent to the DLQ: %s: %s correlation_id=%s", where, reason, error, correlation_id
    )
    await emit([Outgoing(DLQ, None, Envelope.new(letter, source=AGENT_NAME))])


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return repr(value).encode("utf-8")


async def handle_event(event: EventT) -> str:
    """Process one record end to end; returns a short label of what happened (for tests)."""
    message = event.message
    where = Coordinates(str(message.topic), int(message.partition), int(message.offset))
    try:
        envelope = decode(_as_bytes(message.value) or b"")
    except SchemaError as exc:
        await dead_letter(event, where, exc.reason.value, str(exc))
        return "dead_letter"
    try:
        records = processor.handle(envelope, where)
    except RecordRefused as exc:
        await dead_letter(event, where, exc.reason, str(exc), envelope.correlation_id)
        return "dead_letter"
    except EventProError as exc:
        await dead_letter(event, where, "domain_error", str(exc), envelope.correlation_id)
        return "dead_letter"
    await emit(records)
    if records:
        logger.debug(
            "%s %s -> %s correlation_id=%s",
            where,
            envelope.event_type,
            ",".join(r.envelope.event_type for r in records),
            envelope.correlation_id,
        )
    return envelope.event_type


@app.agent(inventory_input, name=AGENT_NAME, concurrency=1)
async def inventory_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
    """Decide every ticket request and expire holds; yields a label per record."""
    await declare_topics()
    async for event in stream.events():
        try:
            label = await handle_event(event)
        except Exception as exc:  # a bug must not stop the partition: park the record
            message = event.message
            where = Coordinates(str(message.topic), int(message.partition), int(message.offset))
            logger.exception("unexpected error on %s; sending it to the DLQ", where)
            await dead_letter(event, where, "unexpected_error", repr(exc))
            label = "dead_letter"
        yield label


async def send_expiry_ticks(partitions: int, now_ms: int | None = None) -> None:
    """Send one ``HoldExpiryTick`` to every partition of ``inventory-ticks``."""
    now = _now_ms() if now_ms is None else now_ms
    for partition in range(partitions):
        tick = Envelope.new(HoldExpiryTick(partition=partition, now_ms=now), source=AGENT_NAME)
        await ticks_topic.send(key=None, value=encode(tick), partition=partition)


@app.timer(_settings.expiry_tick_seconds, on_leader=True, name="eventpro.expiry-ticks")
async def expiry_ticks() -> None:
    """The leader asks each partition's owner to release its expired holds.

    A failed send (topic metadata not known yet, broker away) is logged and retried at the
    next tick: an exception here would crash the whole app.
    """
    try:
        await send_expiry_ticks(_settings.partitions)
    except Exception as exc:
        logger.warning("could not send hold-expiry ticks, retrying next time: %r", exc)


@app.on_partitions_revoked.connect
async def _drop_index_on_revoke(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
    expiry_index.invalidate()


@app.on_partitions_assigned.connect
async def _drop_index_on_assign(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
    expiry_index.invalidate()
