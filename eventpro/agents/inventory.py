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

Batching: with ``EVENTPRO_INVENTORY_BATCH_SIZE`` > 1 (the default) the agent takes up to that
many records at a time (``take_events``; a batch waits at most
``EVENTPRO_INVENTORY_BATCH_WITHIN_MS`` to fill, the latency it adds) and handles them through
a write-back overlay of the tables
(:class:`~eventpro.tables.batching.WriteBackState`): each record is decided with its own
record as Faust's current event, so it reads its own partition's store and sees the batch's
earlier writes; at the end each dirty key is written once, in the context of a record of its
own partition (so on that partition's changelog), then the batch's outcomes are sent
together. ``take_events`` acknowledges the records only after that, so a crash mid-batch
leaves the whole batch to be redelivered. A batch size of 1 runs the per-record path.

Hold expiry: a timer may not write partitioned tables (it runs outside any partition's
stream), so the leader's timer only sends a tick to every partition of ``inventory-ticks``;
the agent that owns the partition releases the due holds with ordinary table writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT

from eventpro.agents.channels import declare_topics, inventory_input, ticks_topic, topic_for
from eventpro.agents.processing import (
    Coordinates,
    EmittedHere,
    Outgoing,
    RecordRefused,
)
from eventpro.agents.saga import SagaInventoryProcessor
from eventpro.app import app
from eventpro.commit_gate import commit_gate
from eventpro.exceptions import EventProError
from eventpro.schemas import DeadLetter, Envelope, HoldExpiryTick, SchemaError, decode, encode
from eventpro.settings import get_settings
from eventpro.tables import HoldExpiryIndex, state
from eventpro.tables.batching import WriteBackState
from eventpro.tables.reconcile import PendingPartitions, reconcile_partition
from eventpro.tables.state import TicketingState
from eventpro.topics import DLQ
from eventpro.transport import EventProProducerBuffer

__all__ = (
    "AGENT_NAME",
    "BATCH_SIZE",
    "BATCH_WITHIN_SECONDS",
    "DEFAULT_BATCH_SIZE",
    "PRODUCER_BUFFER_MESSAGES",
    "batch_processor",
    "batch_state",
    "dead_letter",
    "dead_letter_record",
    "decide",
    "emit",
    "expiry_index",
    "handle_batch",
    "handle_event",
    "inventory_agent",
    "pending_recount",
    "persisted",
    "processor",
    "send_expiry_ticks",
    "withhold_acks",
)

logger = logging.getLogger(__name__)

AGENT_NAME = "eventpro.agents.inventory"

_settings = get_settings()


DEFAULT_BATCH_SIZE = 1 if _settings.processing_guarantee == "exactly_once" else 1000
"""Per record under exactly_once: fewer records per transaction commit boundary to wait for."""
BATCH_SIZE = _settings.inventory_batch_size or DEFAULT_BATCH_SIZE
"""Records per batch (``EVENTPRO_INVENTORY_BATCH_SIZE``); 1 runs the per-record path."""
BATCH_WITHIN_SECONDS = _settings.inventory_batch_within_ms / 1000.0
"""How long a batch waits to fill (``EVENTPRO_INVENTORY_BATCH_WITHIN_MS``): latency it adds."""
PRODUCER_BUFFER_MESSAGES = _settings.producer_buffer_messages or max(100, 4 * BATCH_SIZE)
"""Table changelog records Faust may buffer before it pauses every stream to drain them.

Faust's default, 100, is less than one batch's writes: each incoming record would then wait
(and log a warning) until the buffer drained, stalling the worker after every batch.
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


EXACTLY_ONCE = _settings.processing_guarantee == "exactly_once"
expiry_index = HoldExpiryIndex(_settings.partitions)
pending_recount = PendingPartitions(_settings.partitions)
"""Partitions whose counters are recounted from their claims before their next record."""
emitted_here = EmittedHere() if EXACTLY_ONCE else None
"""Outcomes this process emitted (exactly_once only; see InventoryProcessor)."""


def _processor_over(tables: TicketingState) -> SagaInventoryProcessor:
    """The agent's processor over ``tables`` (the tables themselves, or the batch overlay)."""
    return SagaInventoryProcessor(
        tables,
        expiry_index,
        partitions=_settings.partitions,
        hold_ttl_ms=int(_settings.hold_ttl_seconds * 1000),
        max_quantity=_settings.max_quantity,
        clock_ms=_now_ms,
        emitted_here=emitted_here,
    )


processor = _processor_over(state)


def _activate(event: EventT | None) -> None:
    """Make ``event`` Faust's current event in this task (store partition, changelog partition)."""
    _current_event.set(None if event is None else weakref.ref(event))


batch_state = WriteBackState(state, _activate)
"""The write-back overlay of the tables the batch path reads and writes."""
batch_processor = _processor_over(batch_state.state)


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


def _where(event: EventT) -> Coordinates:
    message = event.message
    return Coordinates(str(message.topic), int(message.partition), int(message.offset))


def dead_letter_record(
    event: EventT, where: Coordinates, reason: str, error: str, correlation_id: str | None = None
) -> Outgoing:
    """The dead letter of the record behind ``event``, with why it was refused."""
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
    return Outgoing(DLQ, None, Envelope.new(letter, source=AGENT_NAME))


async def dead_letter(
    event: EventT, where: Coordinates, reason: str, error: str, correlation_id: str | None = None
) -> None:
    """Send the record behind ``event`` to the dead-letter topic, with why it was refused."""
    await emit([dead_letter_record(event, where, reason, error, correlation_id)])


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return repr(value).encode("utf-8")


def decide(event: EventT, handler: SagaInventoryProcessor, out: list[Outgoing]) -> str:
    """Decode and apply one record with ``handler``; appends what to emit to ``out``.

    Returns a short label of what happened. A record that cannot be read or applied adds its
    dead letter to ``out`` instead; no exception escapes (a bug must not stop the partition).
    """
    message = event.message
    try:
        envelope = decode(_as_bytes(message.value) or b"")
    except SchemaError as exc:
        out.append(dead_letter_record(event, _where(event), exc.reason.value, str(exc)))
        return "dead_letter"
    except Exception as exc:
        logger.exception("unexpected error decoding %s; sending it to the DLQ", _where(event))
        out.append(dead_letter_record(event, _where(event), "unexpected_error", repr(exc)))
        return "dead_letter"
    where = _where(event)
    try:
        records = handler.handle(envelope, where)
    except RecordRefused as exc:
        out.append(dead_letter_record(event, where, exc.reason, str(exc), envelope.correlation_id))
        return "dead_letter"
    except EventProError as exc:
        out.append(
            dead_letter_record(event, where, "domain_error", str(exc), envelope.correlation_id)
        )
        return "dead_letter"
    except Exception as exc:
        logger.exception("unexpected error on %s; sending it to the DLQ", where)
        out.append(
            dead_letter_record(event, where, "unexpected_error", repr(exc), envelope.correlation_id)
        )
        return "dead_letter"
    out.extend(records)
    if records and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s %s -> %s correlation_id=%s",
            where,
            envelope.event_type,
            ",".join(r.envelope.event_type for r in records),
            envelope.correlation_id,
        )
    return envelope.event_type


def _reconcile_if_new(event: EventT, state: TicketingState) -> None:
    """Recount the counters of ``event``'s partition if it is its first record since a
    rebalance (see :mod:`eventpro.tables.reconcile`); ``event`` must be the current event."""
    partition = int(event.message.partition)
    if pending_recount.take(partition):
        corrections = reconcile_partition(state, partition, _settings.partitions)
        logger.info("partition %d recounted: %d correction(s)", partition, len(corrections))


async def persisted(futures: Sequence[Awaitable[Any]]) -> None:
    """Wait until the broker acknowledged ``futures`` (records this batch produced).

    The ordering barrier between the flush steps of :class:`WriteBackState` (at least
    once); under exactly_once the transaction makes a record's writes atomic instead.
    """
    if futures and not EXACTLY_ONCE:
        await asyncio.gather(*futures)


def _collect() -> contextlib.AbstractContextManager[list[Any]]:
    """Collect the futures of the table writes made inside the block."""
    buffer = getattr(app.producer, "buffer", None)
    if isinstance(buffer, EventProProducerBuffer):
        return buffer.collect()
    return contextlib.nullcontext([])  # another transport (tests): nothing to wait for


async def handle_event(event: EventT) -> str:
    """Process one record end to end (the per-record path); returns a short label.

    Under at least once it is a batch of one, for the ordered flush steps.
    """
    if not EXACTLY_ONCE:
        return (await handle_batch([event]))[0]
    _reconcile_if_new(event, state)
    out: list[Outgoing] = []
    label = decide(event, processor, out)
    await emit(out)
    return label


async def handle_batch(events: Sequence[EventT]) -> list[str]:
    """Process a batch: decide each record over the overlay, write each key once, send all.

    Every record is decided in its own context (current event), so reads go to its
    partition's store; the overlay's flush writes each key in the context of a record of its
    partition. The writes go out in :class:`WriteBackState`'s three steps, each acknowledged
    before the next; outcomes are sent with the statuses, in record order.
    """
    out: list[Outgoing] = []
    labels: list[str] = []
    enter = batch_state.enter
    rebalances = pending_recount.rebalances
    try:
        for event in events:
            enter(event)
            _reconcile_if_new(event, batch_state.state)
            labels.append(decide(event, batch_processor, out))
        with _collect() as claims:
            writes = batch_state.flush_claims()
        await persisted(claims)
        if pending_recount.rebalances == rebalances:
            removals = batch_state.claims.deletes
            with _collect() as records:
                writes += batch_state.flush_records()
            sent = await emit(out)
            if removals:
                await persisted([*records, *sent])
        if pending_recount.rebalances != rebalances:
            return _abandon(events)
        writes += batch_state.flush_removals()
    except BaseException:
        batch_state.discard()
        raise
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "batch of %d records: %d table writes, %d outcomes", len(events), writes, len(out)
        )
    return labels


@app.agent(inventory_input, name=AGENT_NAME, concurrency=1)
async def inventory_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
    """Decide every ticket request and expire holds; yields a label per record or batch.

    Batched (``take_events``): a batch's records are acknowledged when the next batch is
    requested, after their table writes and outcome sends were issued.
    """
    await declare_topics()
    _size_producer_buffer()
    if BATCH_SIZE <= 1:
        async for event in stream.events():
            async with commit_gate.processing():
                yield await handle_event(event)
        return
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
        async with commit_gate.processing():
            try:
                labels = await handle_batch(events)
            except Exception:
                withhold_acks(events)
                logger.critical(
                    "a batch of %d records could not be written or sent; its offsets will not "
                    "be committed, so the records are processed again after a restart or "
                    "rebalance. Check the worker's data dir (RocksDB) and the broker",
                    len(events),
                    exc_info=True,
                )
                raise
            yield _summary(labels)


def _size_producer_buffer() -> None:
    """Let Faust's changelog buffer hold a few batches' writes (see PRODUCER_BUFFER_MESSAGES)."""
    buffer = getattr(app.producer, "buffer", None)
    current = getattr(buffer, "max_messages", None)
    if isinstance(current, int) and current != PRODUCER_BUFFER_MESSAGES:
        buffer.max_messages = PRODUCER_BUFFER_MESSAGES  # type: ignore[union-attr]
        logger.info("producer buffer holds up to %d records", PRODUCER_BUFFER_MESSAGES)


def _abandon(events: Sequence[EventT]) -> list[str]:
    """A rebalance happened while the batch waited for the broker: stop writing for it.

    Its partitions may have moved; whoever owns them now reads the records again (they are
    never committed from here) and finishes what was written so far, as after a crash.
    """
    batch_state.discard()
    withhold_acks(events)
    logger.warning(
        "a rebalance happened while a batch of %d records was being written; the rest of it "
        "is left to the partitions' owners, who process the records again",
        len(events),
    )
    return ["abandoned"] * len(events)


def _summary(labels: list[str]) -> str:
    """One label per batch (Faust's per-value bookkeeping of an agent's yields is not free)."""
    return labels[0] if len(labels) == 1 else f"batch of {len(labels)}"


def withhold_acks(events: Sequence[EventT]) -> None:
    """Make sure ``events`` are never marked safe to commit (``take_events`` acks on close).

    A message marked acked without its final ack never reaches the consumer's committable
    offsets, so the partition's committed offset stays below the failed batch.
    """
    for event in events:
        event.message.acked = True


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
    pending_recount.invalidate()
    if emitted_here is not None:
        emitted_here.clear()


@app.on_partitions_assigned.connect
async def _drop_index_on_assign(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
    expiry_index.invalidate()
    pending_recount.invalidate()
    if emitted_here is not None:
        # A record handled between the revocation and now may have emitted into a
        # transaction the rebalance aborted; when it is read again it must emit again.
        emitted_here.clear()
