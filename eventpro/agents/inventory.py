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
many records at a time (:func:`~eventpro.agents.batches.take_batches`: a batch waits at most
``EVENTPRO_INVENTORY_BATCH_WITHIN_MS`` to fill, the latency it adds, or
``EVENTPRO_INVENTORY_BATCH_BEHIND_MS`` when a full batch already waits in the partitions) and
decides them over a write-back overlay of the tables
(:class:`~eventpro.tables.batching.WriteBackState`): each
record is decided with its own record as Faust's current event, so it reads its own
partition's store and sees the earlier writes still in the overlay; each dirty key is
written once per batch, in the context of a record of its own partition (so on that
partition's changelog). At least once, a batch's writes go out in three ordered steps
(claims; counters, statuses and outcomes; removals), each after the broker acknowledged the
previous one: the agent writes the claims and hands the batch to :data:`finisher`, which
does the rest in order while the agent decides the next batches over the overlay
(:mod:`eventpro.agents.pipeline`). A batch's records are acknowledged only when it is
finished, so a crash mid-batch leaves the whole batch to be redelivered. Each step's
changelog records and outcomes leave as one Kafka batch per partition
(:class:`~eventpro.agents.output.Outbox`, :mod:`eventpro.produce`) rather than one by one
through Faust. A batch size of 1 runs the per-record path.

Hold expiry: a timer may not write partitioned tables (it runs outside any partition's
stream), so the leader's timer only sends a tick to every partition of ``inventory-ticks``;
the agent that owns the partition releases the due holds with ordinary table writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT

from eventpro.agents.batches import consumer_lag, take_batches
from eventpro.agents.channels import declare_topics, inventory_input, ticks_topic
from eventpro.agents.output import Outbox, emit, persisted, withhold_acks
from eventpro.agents.pipeline import BatchFinisher
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
from eventpro.membership import hold_while_in_doubt
from eventpro.schemas import DeadLetter, Envelope, HoldExpiryTick, SchemaError, decode, encode
from eventpro.settings import get_settings
from eventpro.tables import HoldExpiryIndex, state
from eventpro.tables.batching import BatchWrites, WriteBackState, make_current
from eventpro.tables.reconcile import PendingPartitions, reconcile_partition
from eventpro.tables.state import TicketingState
from eventpro.topics import DLQ

__all__ = (
    "AGENT_NAME",
    "BATCH_BEHIND_SECONDS",
    "BATCH_SIZE",
    "BATCH_WITHIN_SECONDS",
    "DEFAULT_BATCH_SIZE",
    "PIPELINE_DEPTH",
    "PRODUCER_BUFFER_MESSAGES",
    "DecidedBatch",
    "batch_processor",
    "batch_state",
    "dead_letter",
    "dead_letter_record",
    "decide",
    "decide_batch",
    "expiry_index",
    "finish_batch",
    "finisher",
    "handle_batch",
    "handle_event",
    "inventory_agent",
    "pending_recount",
    "processor",
    "send_expiry_ticks",
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
BATCH_BEHIND_SECONDS = _settings.inventory_batch_behind_ms / 1000.0
"""How long a batch waits to fill under a backlog (``EVENTPRO_INVENTORY_BATCH_BEHIND_MS``)."""
PIPELINE_DEPTH = 2
"""Decided batches that may wait for their last write steps behind the one being finished."""
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


batch_state = WriteBackState(state, make_current)
"""The write-back overlay of the tables the batch path reads and writes."""
batch_processor = _processor_over(batch_state.state)


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


async def handle_event(event: EventT) -> str:
    """Process one record end to end (the per-record path); returns a short label.

    Under at least once it is a batch of one, for the ordered write steps.
    """
    if not EXACTLY_ONCE:
        return (await handle_batch([event]))[0]
    _reconcile_if_new(event, state)
    out: list[Outgoing] = []
    label = decide(event, processor, out)
    await emit(out)
    return label


@dataclass(slots=True)
class DecidedBatch:
    """A batch whose records are decided and whose claims are written (step 1)."""

    events: Sequence[EventT]
    labels: list[str]
    writes: BatchWrites
    claims_sent: list[Any]
    """Futures of the claims' changelog records (each resolves on the broker's ack)."""
    outgoing: list[Outgoing]
    rebalances: int
    """``pending_recount.rebalances`` when it was decided: a rebalance since makes it stale."""


_overlay_rebalances = 0
"""The rebalance count the overlay's pending writes were made under."""


async def decide_batch(events: Sequence[EventT]) -> DecidedBatch:
    """Decide ``events`` over the overlay and write their claims (step 1 of the batch).

    Every record is decided in its own context (current event), so reads go to its
    partition's store and see earlier batches' writes that are still pending. Each record
    is held unacknowledged until :func:`finish_batch` (``take_batches`` acks on its own).
    """
    global _overlay_rebalances
    rebalances = pending_recount.rebalances
    if rebalances != _overlay_rebalances:
        # Writes pending from before a rebalance are given up with their batches.
        batch_state.discard()
        _overlay_rebalances = rebalances
    out: list[Outgoing] = []
    labels: list[str] = []
    enter = batch_state.enter
    try:
        for event in events:
            event.message.incref()
            enter(event)
            _reconcile_if_new(event, batch_state.state)
            labels.append(decide(event, batch_processor, out))
        writes = batch_state.seal()
        claims = Outbox()
        with claims.writing():
            batch_state.write(writes.claims)
        claims_sent = await claims.send()
    except BaseException:
        batch_state.discard()
        raise
    return DecidedBatch(events, labels, writes, claims_sent, out, rebalances)


async def finish_batch(batch: DecidedBatch) -> None:
    """Steps 2 and 3 of a decided batch, each after the broker acknowledged the previous
    step's records; then its records are acknowledged.

    Counters, user counts and statuses are written and the outcomes sent together, in record
    order; released claims are removed last. A rebalance meanwhile stops it (see
    :func:`_abandon`).
    """
    await persisted(batch.claims_sent)
    if pending_recount.rebalances != batch.rebalances:
        _abandon(batch.events)
        return
    records = Outbox()
    with records.writing():
        writes = batch_state.write(batch.writes.records)
    await records.emit(batch.outgoing)
    sent = await records.send()
    if batch.writes.removals:
        await persisted(sent)
    if pending_recount.rebalances != batch.rebalances:
        _abandon(batch.events)
        return
    removals = Outbox()
    with removals.writing():
        writes += batch_state.write(batch.writes.removals)
    await removals.send()
    _acknowledge(batch.events)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "batch of %d records: %d table writes after its claims, %d outcomes",
            len(batch.events),
            writes,
            len(batch.outgoing),
        )


def _acknowledge(events: Sequence[EventT]) -> None:
    """Release the hold :func:`decide_batch` took on each record: it may be committed."""
    on_message_out = app.sensors.on_message_out
    for event in events:
        message = event.message
        if event.ack():
            on_message_out(message.tp, message.offset, message)


def _give_up(batch: DecidedBatch) -> None:
    """``batch`` will not be finished: its records must never be acknowledged."""
    withhold_acks(batch.events)


finisher: BatchFinisher[DecidedBatch] = BatchFinisher(finish_batch, _give_up, depth=PIPELINE_DEPTH)
"""Finishes the batched path's decided batches while the agent decides the next ones."""


async def handle_batch(events: Sequence[EventT]) -> list[str]:
    """Process a batch end to end here (decide, then write and send); returns its labels."""
    batch = await decide_batch(events)
    await finish_batch(batch)
    return batch.labels


@app.agent(inventory_input, name=AGENT_NAME, concurrency=1)
async def inventory_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
    """Decide every ticket request and expire holds; yields a label per record or batch.

    Batched (``take_batches``), at least once: the agent decides a batch and writes its
    claims, then hands it to :data:`finisher` and takes the next; the finisher writes the
    rest and acknowledges the records. Exactly once, each batch is finished here.
    """
    await declare_topics()
    _size_producer_buffer()
    if BATCH_SIZE <= 1:
        async for event in stream.events():
            if not await hold_while_in_doubt(app, [event], AGENT_NAME):
                withhold_acks([event])
                continue
            async with commit_gate.processing():
                yield await handle_event(event)
        return
    try:
        async for events in take_batches(
            stream,
            BATCH_SIZE,
            BATCH_WITHIN_SECONDS,
            behind_within=BATCH_BEHIND_SECONDS,
            lag=consumer_lag(app),
        ):
            if not await hold_while_in_doubt(app, events, AGENT_NAME):
                withhold_acks(events)
                continue
            async with commit_gate.processing():
                try:
                    if EXACTLY_ONCE:
                        labels = await handle_batch(events)
                    else:
                        finisher.raise_if_failed()
                        batch = await decide_batch(events)
                        labels = batch.labels
                        await finisher.submit(batch)
                except Exception:
                    withhold_acks(events)
                    logger.critical(
                        "a batch of %d records could not be written or sent; its offsets will "
                        "not be committed, so the records are read again from the partition's "
                        "commit point. Check the worker's data dir (RocksDB) and the broker",
                        len(events),
                        exc_info=True,
                    )
                    raise
                yield _summary(labels)
    finally:
        await finisher.stop()


def _size_producer_buffer() -> None:
    """Let Faust's changelog buffer hold a few batches' writes (see PRODUCER_BUFFER_MESSAGES)."""
    buffer = getattr(app.producer, "buffer", None)
    current = getattr(buffer, "max_messages", None)
    if isinstance(current, int) and current != PRODUCER_BUFFER_MESSAGES:
        buffer.max_messages = PRODUCER_BUFFER_MESSAGES  # type: ignore[union-attr]
        logger.info("producer buffer holds up to %d records", PRODUCER_BUFFER_MESSAGES)


def _abandon(events: Sequence[EventT]) -> None:
    """A rebalance happened while the batch waited for the broker: stop writing for it.

    Its partitions may have moved; whoever owns them now reads the records again (they are
    never committed from here) and finishes what was written so far, as after a crash. Its
    writes still pending in the overlay are dropped by the next :func:`decide_batch`.
    """
    withhold_acks(events)
    logger.warning(
        "a rebalance happened while a batch of %d records was being written; the rest of it "
        "is left to the partitions' owners, who process the records again",
        len(events),
    )


def _summary(labels: list[str]) -> str:
    """One label per batch (Faust's per-value bookkeeping of an agent's yields is not free)."""
    return labels[0] if len(labels) == 1 else f"batch of {len(labels)}"


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
