"""Senders of the saga agents, which wait for the broker before the input is acked.

:func:`send` produces an
:class:`~eventpro.agents.processing.Outgoing` envelope and :func:`send_raw` a
:class:`~eventpro.retry.RawOutgoing`; both wait until the broker acknowledged the record, so
an agent acks its input only after its output is safe. :func:`handle_then_ack` is that rule for
one record of an agent that acks by hand (``stream.noack()``, records in flight at once), and
:func:`decode_record` decodes such a record once for its order key and its handler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from faust.types import EventT

from eventpro.agents.channels import topic_for
from eventpro.agents.processing import Outgoing
from eventpro.app import app
from eventpro.commit_gate import commit_gate
from eventpro.monitoring.sensor import count_sent
from eventpro.produce import batch_producer
from eventpro.retry import RawOutgoing, RawRecord, dead_letter_record
from eventpro.schemas import Envelope, SchemaError, decode, encode

__all__ = ("decode_record", "handle_then_ack", "send", "send_raw")

logger = logging.getLogger(__name__)


def decode_record(record: RawRecord) -> Envelope | SchemaError:
    """The record's envelope, or why it cannot be read (the handler dead-letters it)."""
    try:
        return decode(record.value)
    except SchemaError as exc:
        return exc


async def send(records: Iterable[Outgoing]) -> None:
    """Produce envelopes and wait for the broker's acknowledgement of each."""
    for record in records:
        await _produce(
            record.topic,
            record.key.encode("utf-8") if record.key is not None else None,
            encode(record.envelope),
            partition=record.partition,
        )


async def send_raw(records: Iterable[RawOutgoing]) -> None:
    """Produce raw records (retries, dead letters) and wait for their acknowledgement."""
    for record in records:
        await _produce(record.topic, record.key, record.value, headers=list(record.headers))


async def _produce(
    logical: str,
    key: bytes | None,
    value: bytes,
    *,
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Produce one record and wait for the broker's acknowledgement.

    At least once over Kafka it goes straight to the Kafka client, which puts it in the
    partition Faust's ``Topic.send`` would pick; that skips Faust's per-record send
    machinery (:mod:`eventpro.produce`). Under exactly_once Faust sends it, in the
    transaction of the record being handled.
    """
    topic = topic_for(logical)
    producer = batch_producer(app)
    if producer is None:
        fut = await topic.send(key=key, value=value, partition=partition, headers=headers or None)
        await fut
        return
    name = topic.get_topic_name()
    fut = await producer.send(name, value, key=key, partition=partition, headers=headers or None)
    count_sent(app, name, 1)
    await fut


async def handle_then_ack(
    event: EventT,
    record: RawRecord,
    handle: Callable[[], Awaitable[object]],
    *,
    agent: str,
    attempts: int,
) -> None:
    """Run ``handle`` for ``record`` inside the commit gate, then ack ``event``.

    A bug must not lose the record: it is parked in the DLQ (``attempts`` recorded) and acked.
    If even the dead letter cannot be sent, the record stays unacked and is redelivered.
    """
    async with commit_gate.processing():
        try:
            await handle()
        except Exception as exc:
            logger.exception("unexpected error on %s; sending it to the DLQ", record)
            letter = dead_letter_record(
                record, reason="unexpected_error", error=repr(exc), agent=agent, attempts=attempts
            )
            try:
                await send_raw([letter])
            except Exception:
                logger.exception("could not dead-letter %s; it will be redelivered", record)
                return
        event.ack()
