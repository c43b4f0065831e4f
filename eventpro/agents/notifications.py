"""The notifications agent: one notification per terminal outcome, never two.

Reads ``reservations`` (``RequestRejected``, ``SeatsReleased``) and ``orders``
(``OrderConfirmed``), both keyed by event_id, and keeps its dedup record in the
``notifications-sent`` table (``event_id/request_id`` -> notification_id), co-partitioned with
those topics and written only by this agent (concurrency 1). See :mod:`eventpro.notify`.

Each notification waits for the broker's acknowledgement before its record is acked, so up to
``EVENTPRO_NOTIFICATIONS_MAX_IN_FLIGHT`` records are handled at once (:class:`InFlight`, in order
per request). One at a time, the agent sent ~140 notifications/s on the benchmark: it held the
records of every other agent reading ``reservations`` behind its full input buffer.

Undecodable records on ``orders`` go to the DLQ; on ``reservations`` the payments agent
dead-letters them already, so this agent only logs and skips them (one dead letter per record).
"""

from __future__ import annotations

import logging

import faust
from faust.types import EventT

from eventpro.agents.channels import declare_topics, notifications_input, orders_topic
from eventpro.agents.inflight import InFlight
from eventpro.agents.output import decode_record, handle_then_ack, send, send_raw
from eventpro.agents.payments import raw_record
from eventpro.app import app
from eventpro.domain import request_key
from eventpro.notify import NotificationProcessor, NotificationSink, SimulatedSink, is_notified
from eventpro.payments import get_payment_settings
from eventpro.retry import RawRecord, dead_letter_record
from eventpro.schemas import Envelope, SchemaError
from eventpro.settings import get_settings

__all__ = (
    "AGENT_NAME",
    "NOTIFICATIONS_TABLE",
    "handle_record",
    "inflight",
    "notifications_agent",
    "notifications_table",
    "processor",
    "set_sink",
)

logger = logging.getLogger(__name__)

AGENT_NAME = "eventpro.agents.notifications"
NOTIFICATIONS_TABLE = "notifications-sent"

_settings = get_settings()
_payment_settings = get_payment_settings()


def _store_options() -> dict[str, object]:
    return {"driver": "rocksdict"} if app.conf.store.scheme == "rocksdb" else {}


notifications_table = app.Table(
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
    options=_store_options(),
    help="event_id/request_id -> notification_id: requests already notified",
)
notifications_table.key_serializer = "raw"
notifications_table.value_serializer = "raw"

processor = NotificationProcessor(
    notifications_table,
    SimulatedSink(_payment_settings.notifications_log),
    channel=_payment_settings.notification_channel,
)
inflight = InFlight(_payment_settings.notifications_max_in_flight)


def set_sink(sink: NotificationSink) -> None:
    """Send notifications through ``sink`` (a real provider, or a test double)."""
    processor.sink = sink


def _order_key(record: RawRecord, decoded: Envelope | SchemaError) -> str:
    """Serialise per request, so two outcomes of one request never both pass the dedup check."""
    data = None if isinstance(decoded, SchemaError) else decoded.data
    event_id, request_id = getattr(data, "event_id", None), getattr(data, "request_id", None)
    if isinstance(event_id, str) and isinstance(request_id, str):
        return request_key(event_id, request_id)
    return f"{record.topic}/{record.partition}"


async def handle_record(record: RawRecord, decoded: Envelope | SchemaError) -> str:
    """Notify for one record; returns a short label of what happened."""
    if isinstance(decoded, SchemaError):
        if record.topic != orders_topic.get_topic_name():
            logger.debug("skipping unreadable %s (the payments agent dead-letters it)", record)
            return "skipped"
        logger.warning("record %s sent to the DLQ: %s", record, decoded)
        await send_raw(
            [
                dead_letter_record(
                    record,
                    reason=decoded.reason.value,
                    error=str(decoded),
                    agent=AGENT_NAME,
                    attempts=1,
                )
            ]
        )
        return "dlq"
    outgoing = await processor.handle(decoded)
    await send(outgoing)
    return "notified" if outgoing else "ignored"


async def _process(event: EventT, record: RawRecord, decoded: Envelope | SchemaError) -> None:
    await handle_then_ack(
        event, record, lambda: handle_record(record, decoded), agent=AGENT_NAME, attempts=1
    )


async def submit(event: EventT) -> None:
    """Hand one record to the in-flight pool (returns once a slot is free).

    A record that is not a terminal outcome (``SeatsReserved``, half of the input) has
    nothing to notify, so it is acknowledged at once, without a task.
    """
    record = raw_record(event)
    decoded = decode_record(record)
    if not isinstance(decoded, SchemaError) and not is_notified(decoded):
        event.ack()
        return
    await inflight.submit(_order_key(record, decoded), lambda: _process(event, record, decoded))


@app.agent(notifications_input, name=AGENT_NAME, concurrency=1)
async def notifications_agent(stream: faust.StreamT[bytes]) -> None:
    """Send one notification per terminal outcome, many at once."""
    await declare_topics()
    async for event in stream.noack().events():
        await submit(event)
    await inflight.drain()
