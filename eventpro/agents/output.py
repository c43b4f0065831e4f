"""Senders of the agents, which wait for the broker before the input is acked.

:func:`send` produces an
:class:`~eventpro.agents.processing.Outgoing` envelope and :func:`send_raw` a
:class:`~eventpro.retry.RawOutgoing`; both wait until the broker acknowledged the record, so
an agent acks its input only after its output is safe. :func:`handle_then_ack` is that rule for
one record of an agent that acks by hand (``stream.noack()``, records in flight at once), and
:func:`decode_record` decodes such a record once for its order key and its handler.

Batching agents write a batch's table changes and outcomes through an :class:`Outbox` (one
Kafka batch per partition), wait for them with :func:`persisted`, and, when a batch cannot
be written or sent, keep its records from ever being committed with :func:`withhold_acks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from faust.types import EventT
from faust.types.enums import ProcessingGuarantee

from eventpro.agents.channels import topic_for
from eventpro.agents.processing import Outgoing
from eventpro.app import app
from eventpro.commit_gate import commit_gate
from eventpro.monitoring.sensor import count_sent
from eventpro.produce import RecordBatches, batch_producer
from eventpro.retry import RawOutgoing, RawRecord, dead_letter_record
from eventpro.schemas import Envelope, SchemaError, decode, encode
from eventpro.tables.changelog import gathering
from eventpro.transport import EventProProducerBuffer

__all__ = (
    "Outbox",
    "decode_record",
    "emit",
    "handle_then_ack",
    "persisted",
    "send",
    "send_raw",
    "withhold_acks",
)

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


async def emit(records: Iterable[Outgoing]) -> list[Any]:
    """Produce ``records``; returns their futures (each resolves on the broker's ack).

    Faust flushes the producer before it commits the source offset.
    """
    sent = []
    for record in records:
        fut = await topic_for(record.topic).send(
            key=record.key.encode("utf-8") if record.key is not None else None,
            value=encode(record.envelope),
            partition=record.partition,
        )
        if fut is not None:
            sent.append(fut)
    return sent


async def persisted(futures: Sequence[Awaitable[Any]]) -> None:
    """Wait until the broker acknowledged ``futures`` (records this batch produced).

    The ordering barrier between the write steps of a batch (at least once); under
    exactly_once the transaction makes a record's writes atomic instead.
    """
    if futures and app.conf.processing_guarantee != ProcessingGuarantee.EXACTLY_ONCE:
        await asyncio.gather(*futures)


def _collect() -> contextlib.AbstractContextManager[list[Any]]:
    """Collect the futures of the table writes made inside the block."""
    buffer = getattr(app.producer, "buffer", None)
    if isinstance(buffer, EventProProducerBuffer):
        return buffer.collect()
    return contextlib.nullcontext([])  # another transport (tests): nothing to wait for


class Outbox:
    """What one write step of a batch produces: its table writes' changelog records and its
    outcomes.

    Over Kafka, at least once, they are gathered and produced as one Kafka batch per
    partition (:mod:`eventpro.produce`); otherwise Faust sends each as it is written.
    """

    __slots__ = ("_gathered", "_producer", "futures")

    def __init__(self) -> None:
        self._producer = batch_producer(app)
        self._gathered = RecordBatches() if self._producer is not None else None
        self.futures: list[Any] = []
        """Futures of what this step sent so far (each resolves on the broker's ack)."""

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Table writes inside the block produce their changelog records here."""
        if self._gathered is not None:
            with gathering(self._gathered):
                yield
            return
        with _collect() as futures:
            yield
        self.futures += futures

    async def emit(self, records: Iterable[Outgoing]) -> None:
        """Produce ``records`` (outcomes, dead letters) with this step."""
        gathered = self._gathered
        if gathered is None:
            self.futures += await emit(records)
            return
        for record in records:
            gathered.add(
                topic_for(record.topic).get_topic_name(),
                record.partition,
                record.key.encode("utf-8") if record.key is not None else None,
                encode(record.envelope),
            )

    async def send(self) -> list[Any]:
        """Send what was gathered; returns the futures of everything this step produced."""
        if self._producer is not None and self._gathered:
            self.futures += await self._gathered.send(self._producer, partial(count_sent, app))
        return self.futures


def withhold_acks(events: Sequence[EventT]) -> None:
    """Make sure ``events`` are never marked safe to commit (``take_events`` and
    ``take_batches`` ack them when their loop body ends).

    A message marked acked without its final ack never reaches the consumer's committable
    offsets, so the partition's committed offset stays below the failed batch; the consumer
    reads the partition again from there (:meth:`EventProConsumer.note_unprocessed`).
    """
    note_unprocessed = getattr(app.consumer, "note_unprocessed", None)
    for event in events:
        event.message.acked = True
        if note_unprocessed is not None:
            note_unprocessed(event.message)  # read again from the commit point, not lost


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
