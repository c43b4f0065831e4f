"""The analytics agent: counts outcomes into per-event totals and tumbling windows.

Reads ``reservations`` (SeatsReserved, RequestRejected, SeatsReleased) and ``orders``
(OrderConfirmed), both keyed by event_id, so the tables it writes are co-partitioned with
them. Records it cannot read are skipped with a warning: analytics never blocks a partition,
and the producing agent's consumers own the dead-letter path.

It counts batches (``take_events``: up to ``EVENTPRO_ANALYTICS_BATCH_SIZE`` records, waiting
at most ``EVENTPRO_ANALYTICS_BATCH_WITHIN_MS``) and writes each totals and window key once
per batch (:mod:`eventpro.analytics.batching`), their changelog records as one Kafka batch
per partition; Faust acknowledges a batch's records only after the agent counted and wrote
it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from functools import partial

import faust
from faust.types import EventT

from eventpro.agents.channels import combined_input, orders_topic, reservations_topic
from eventpro.agents.output import withhold_acks
from eventpro.analytics.batching import BatchedAnalytics
from eventpro.analytics.config import get_analytics_settings
from eventpro.analytics.facts import fact_from
from eventpro.analytics.tables import batched
from eventpro.app import app
from eventpro.commit_gate import commit_gate
from eventpro.membership import hold_while_in_doubt
from eventpro.monitoring.sensor import count_sent
from eventpro.produce import RecordBatches, batch_producer
from eventpro.schemas import SchemaError, decode
from eventpro.tables.changelog import gathering

__all__ = (
    "AGENT_NAME",
    "analytics_agent",
    "analytics_input",
    "count_batch",
    "count_event",
    "orders_topic",
)

logger = logging.getLogger(__name__)

AGENT_NAME = "eventpro.agents.analytics"

_analytics = get_analytics_settings()

analytics_input = combined_input(reservations_topic, orders_topic)
"""The analytics agent's input: reservations and orders, co-partitioned by event_id."""


def count_event(event: EventT, counter: BatchedAnalytics) -> str:
    """Count one record into ``counter``'s batch; returns ``counted``, ``duplicate``,
    ``ignored`` or ``unreadable``."""
    value = event.message.value
    try:
        envelope = decode(value if isinstance(value, bytes) else b"")
    except SchemaError as exc:
        message = event.message
        logger.warning(
            "analytics skips unreadable record %s[%s]@%s: %s",
            message.topic,
            message.partition,
            message.offset,
            exc,
        )
        return "unreadable"
    fact = fact_from(envelope)
    if fact is None:
        return "ignored"
    counted = counter.count(fact, event)
    return "duplicate" if counted.duplicate else "counted"


async def count_batch(
    events: Sequence[EventT], counter: BatchedAnalytics = batched
) -> Counter[str]:
    """Count ``events`` and write the batch; returns how many records got each label.

    The batch's changelog records leave as one Kafka batch per partition when the transport
    allows it (:func:`eventpro.produce.batch_producer`). A record that fails is skipped with its
    error logged (``error``); if writing or sending the batch fails, its counts are dropped
    (every record ``error``; writes already in this worker's store stay there): analytics
    must not stop the partition.
    """
    labels: Counter[str] = Counter()
    for event in events:
        try:
            labels[count_event(event, counter)] += 1
        except Exception:
            logger.exception("analytics failed on %s; record skipped", event.message.tp)
            labels["error"] += 1
    producer = batch_producer(app)
    changelog = RecordBatches()
    try:
        with gathering(changelog) if producer is not None else contextlib.nullcontext():
            counter.flush()
        if producer is not None and changelog:
            await changelog.send(producer, partial(count_sent, app))
    except Exception:
        logger.exception("analytics could not write a batch of %d records; skipped", len(events))
        return Counter(error=len(events))
    return labels


@app.agent(analytics_input, name=AGENT_NAME, concurrency=1)
async def analytics_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
    """Count every outcome once; yields one label per batch."""
    within = _analytics.batch_within_ms / 1000.0
    async for events in stream.take_events(_analytics.batch_size, within=within):
        if not await hold_while_in_doubt(app, events, AGENT_NAME):
            withhold_acks(events)
            continue
        async with commit_gate.processing():
            labels = await count_batch(events)
            yield ",".join(f"{label}:{n}" for label, n in sorted(labels.items()))
