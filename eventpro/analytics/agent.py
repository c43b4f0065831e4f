"""The analytics agent: counts outcomes into per-event totals and tumbling windows.

Reads ``reservations`` (SeatsReserved, RequestRejected, SeatsReleased) and ``orders``
(OrderConfirmed), both keyed by event_id, so the tables it writes are co-partitioned with
them. Records it cannot read are skipped with a warning: analytics never blocks a partition,
and the producing agent's consumers own the dead-letter path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import faust
from faust.types import EventT

from eventpro.agents.channels import combined_input, orders_topic, reservations_topic
from eventpro.analytics.facts import fact_from
from eventpro.analytics.tables import event_time, processor
from eventpro.app import app
from eventpro.commit_gate import commit_gate
from eventpro.schemas import SchemaError, decode
from eventpro.settings import get_settings

__all__ = ("AGENT_NAME", "analytics_agent", "analytics_input", "handle_event", "orders_topic")

logger = logging.getLogger(__name__)

AGENT_NAME = "eventpro.agents.analytics"

_settings = get_settings()

analytics_input = combined_input(reservations_topic, orders_topic)
"""The analytics agent's input: reservations and orders, co-partitioned by event_id."""


def handle_event(event: EventT) -> str:
    """Count one record; returns ``counted``, ``duplicate``, ``ignored`` or ``unreadable``."""
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
    with event_time.at(fact.occurred_at):
        counted = processor.handle(fact)
    return "duplicate" if counted.duplicate else "counted"


@app.agent(analytics_input, name=AGENT_NAME, concurrency=1)
async def analytics_agent(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
    """Count every outcome once; yields a label per record."""
    async for event in stream.events():
        async with commit_gate.processing():
            try:
                label = handle_event(event)
            except Exception:  # analytics must not stop the partition
                logger.exception("analytics failed on %s; record skipped", event.message.tp)
                label = "error"
            yield label
