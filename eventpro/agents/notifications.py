"""The notifications agent: one notification per terminal outcome, never two.

Reads ``reservations`` (``RequestRejected``, ``SeatsReleased``) and ``orders``
(``OrderConfirmed``), both keyed by event_id, and keeps its dedup record in the
``notifications-sent`` table (``event_id/request_id`` -> notification_id), co-partitioned with
those topics and written only by this agent (concurrency 1). See :mod:`eventpro.notify`.

Records are handled in batches (:func:`~eventpro.agents.batches.take_batches`): up to
``EVENTPRO_NOTIFICATIONS_MAX_IN_FLIGHT`` per batch, waiting at most
``EVENTPRO_NOTIFICATIONS_BATCH_WITHIN_MS`` to fill (``EVENTPRO_NOTIFICATIONS_BATCH_BEHIND_MS``
when a full batch already waits in the partitions). A batch's notifications are sent at once;
then their dedup keys and ``NotificationSent`` records leave as one Kafka batch per partition
(:class:`~eventpro.agents.output.Outbox`), and the batch is acknowledged only after the broker
acknowledged them. Handled one record at a time, notifying cost ~400 µs of CPU each, a fifth
of the whole saga's on the benchmark.

A crash mid-batch leaves the batch to be redelivered: a notification already sent is sent
again with the same ``notification_id``, which the sink must deduplicate (idempotency key).
A notification whose sink fails goes to the DLQ and is not recorded. Undecodable records on
``orders`` go to the DLQ; on ``reservations`` the payments agent dead-letters them already, so
this agent only skips them (one dead letter per record).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import faust
from faust.types import EventT

from eventpro.agents.batches import consumer_lag, take_batches
from eventpro.agents.channels import declare_topics, notifications_input, orders_topic
from eventpro.agents.output import (
    Outbox,
    decode_record,
    persisted,
    send_raw,
    withhold_acks,
)
from eventpro.agents.payments import raw_record
from eventpro.app import app
from eventpro.commit_gate import commit_gate
from eventpro.domain import request_key
from eventpro.membership import hold_while_in_doubt
from eventpro.notify import Notification, NotificationProcessor, NotificationSink, SimulatedSink
from eventpro.payments import get_payment_settings
from eventpro.retry import RawOutgoing, dead_letter_record
from eventpro.schemas import Envelope, SchemaError
from eventpro.settings import get_settings
from eventpro.tables.batching import make_current
from eventpro.tables.changelog import gathering_table
from eventpro.tables.stores import store_options

__all__ = (
    "AGENT_NAME",
    "BATCH_BEHIND_SECONDS",
    "BATCH_SIZE",
    "BATCH_WITHIN_SECONDS",
    "NOTIFICATIONS_TABLE",
    "notifications_agent",
    "notifications_table",
    "notify_batch",
    "processor",
    "set_sink",
)

logger = logging.getLogger(__name__)

AGENT_NAME = "eventpro.agents.notifications"
NOTIFICATIONS_TABLE = "notifications-sent"

_settings = get_settings()
_payment_settings = get_payment_settings()

BATCH_SIZE = _payment_settings.notifications_max_in_flight
"""Records per batch, so at most this many notifications are sent at once."""
BATCH_WITHIN_SECONDS = _payment_settings.notifications_batch_within_ms / 1000.0
"""How long a batch waits to fill (``EVENTPRO_NOTIFICATIONS_BATCH_WITHIN_MS``)."""
BATCH_BEHIND_SECONDS = _payment_settings.notifications_batch_behind_ms / 1000.0
"""How long a batch waits to fill when a full batch waits in the partitions
(``EVENTPRO_NOTIFICATIONS_BATCH_BEHIND_MS``)."""


notifications_table = gathering_table(
    app,
    NOTIFICATIONS_TABLE,
    key_type=str,
    value_type=str,
    partitions=_settings.partitions,
    changelog_topic=app.topic(
        f"{app.conf.id}-{NOTIFICATIONS_TABLE}-changelog",
        key_type=str,
        value_type=str,
        key_serializer="raw",
        value_serializer="raw",
        partitions=_settings.partitions,
        compacting=True,
        deleting=True,
        retention=_settings.dedup_ttl_seconds,
        internal=True,
    ),
    # Forgotten locally after the changelog's retention too; a TTL store needs a new name.
    store_name=f"{NOTIFICATIONS_TABLE}-ttl",
    options=store_options(_settings.dedup_ttl_seconds),
    help="event_id/request_id -> notification_id: requests already notified",
)
notifications_table.key_serializer = "raw"
notifications_table.value_serializer = "raw"

processor = NotificationProcessor(
    notifications_table,
    SimulatedSink(_payment_settings.notifications_log),
    channel=_payment_settings.notification_channel,
)


def set_sink(sink: NotificationSink) -> None:
    """Send notifications through ``sink`` (a real provider, or a test double)."""
    processor.sink = sink


Due = tuple[EventT, Envelope, Notification]
"""A record, its outcome and the notification it calls for."""


async def notify_batch(events: Sequence[EventT]) -> Counter[str]:
    """Notify for a batch of records; returns how many records ended how.

    The batch's records are acknowledged by ``take_batches`` afterwards, unless
    :func:`~eventpro.agents.output.withhold_acks` kept them (their output could not be sent).
    """
    labels: Counter[str] = Counter()
    due: list[Due] = []
    letters: list[tuple[EventT, RawOutgoing]] = []
    keys: set[str] = set()
    for event in events:
        record = raw_record(event)
        decoded = decode_record(record)
        if isinstance(decoded, SchemaError):
            if record.topic != orders_topic.get_topic_name():
                logger.debug("skipping unreadable %s (the payments agent dead-letters it)", record)
                labels["skipped"] += 1
                continue
            logger.warning("record %s sent to the DLQ: %s", record, decoded)
            letter = dead_letter_record(
                record,
                reason=decoded.reason.value,
                error=str(decoded),
                agent=AGENT_NAME,
                attempts=1,
            )
            letters.append((event, letter))
            continue
        make_current(event)  # the dedup key lives in this record's partition
        notification = processor.due(decoded)
        if notification is None:
            labels["ignored"] += 1
            continue
        key = request_key(notification.event_id, notification.request_id)
        if key in keys:  # two outcomes of one request in this batch: the first one counts
            labels["ignored"] += 1
            continue
        keys.add(key)
        due.append((event, decoded, notification))
    delivered = await _deliver(due, letters)
    try:
        out = Outbox()
        with out.writing():
            for event, envelope, notification in delivered:
                make_current(event)  # its dedup key and record go with this record's partition
                await out.emit([processor.record(notification, envelope)])
        await persisted(await out.send())
    except Exception:
        logger.exception(
            "could not record %d notifications; the batch of %d records will be read again",
            len(delivered),
            len(events),
        )
        withhold_acks(events)
        return Counter({"error": len(events)})
    if delivered:
        labels["notified"] += len(delivered)
    for event, letter in letters:
        make_current(event)
        try:
            await send_raw([letter])
        except Exception:
            logger.exception("could not dead-letter %s; it will be read again", letter)
            withhold_acks([event])
            labels["error"] += 1
            continue
        labels["dlq"] += 1
    return labels


async def _deliver(due: list[Due], letters: list[tuple[EventT, RawOutgoing]]) -> list[Due]:
    """Send ``due``'s notifications at once; returns those delivered. A failed one is
    dead-lettered (added to ``letters``), not recorded."""
    results = await asyncio.gather(
        *(processor.sink.send(notification) for _, _, notification in due),
        return_exceptions=True,
    )
    delivered: list[Due] = []
    for item, result in zip(due, results, strict=True):
        if not isinstance(result, BaseException):
            delivered.append(item)
            continue
        if not isinstance(result, Exception):
            raise result  # cancellation and the like are not the notification's fault
        event = item[0]
        logger.error("could not send notification %s: %r", item[2].notification_id, result)
        letter = dead_letter_record(
            raw_record(event),
            reason="unexpected_error",
            error=repr(result),
            agent=AGENT_NAME,
            attempts=1,
        )
        letters.append((event, letter))
    return delivered


@app.agent(notifications_input, name=AGENT_NAME, concurrency=1)
async def notifications_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
    """Send one notification per terminal outcome, a batch at a time; yields a summary."""
    await declare_topics()
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
            labels = await notify_batch(events)
        yield ", ".join(f"{n} {label}" for label, n in sorted(labels.items()))
