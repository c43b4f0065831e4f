"""Faust topic objects for EventPro's topics, built from :mod:`eventpro.topics`.

Every topic carries raw bytes (key and value): the agents decode records with
:func:`eventpro.schemas.decode`, so Faust's deserialiser never fails on a record and a bad one
reaches the dead-letter topic instead of crashing a stream. The topics are created with the
configured partition counts by :mod:`eventpro.agents.topic_setup` when the app starts;
``internal=True`` and :func:`declare_topics` are the same guarantee through Faust's own path.
"""

from __future__ import annotations

import logging

import faust

from eventpro.app import app
from eventpro.settings import get_settings
from eventpro.topics import (
    DLQ,
    INVENTORY_TICKS,
    NOTIFICATIONS,
    ORDERS,
    PAYMENTS,
    RESERVATIONS,
    RETRY_TOPICS,
    TICKET_REQUESTS,
    topic_spec,
)

__all__ = (
    "combined_input",
    "declare_topics",
    "dlq_topic",
    "inventory_input",
    "notifications_input",
    "notifications_topic",
    "orders_topic",
    "payments_topic",
    "reservations_topic",
    "retry_topics",
    "ticket_requests_topic",
    "ticks_topic",
    "topic_for",
)

logger = logging.getLogger(__name__)

_settings = get_settings()


def _topic(logical: str) -> faust.TopicT:
    spec = topic_spec(_settings, logical)
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
        replicas=_settings.replication_factor,
        retention=spec.retention_ms / 1000.0,
        compacting="compact" in spec.cleanup_policy,
        deleting="delete" in spec.cleanup_policy,
        internal=True,
    )


def combined_input(*topics: faust.TopicT) -> faust.TopicT:
    """One agent's input over several co-partitioned topics (all keyed by event_id)."""
    return app.topic(
        *(t.get_topic_name() for t in topics),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=_settings.partitions,
        internal=True,
    )


ticket_requests_topic = _topic(TICKET_REQUESTS)
ticks_topic = _topic(INVENTORY_TICKS)
reservations_topic = _topic(RESERVATIONS)
dlq_topic = _topic(DLQ)
payments_topic = _topic(PAYMENTS)
orders_topic = _topic(ORDERS)
notifications_topic = _topic(NOTIFICATIONS)
retry_topics: dict[str, faust.TopicT] = {logical: _topic(logical) for logical in RETRY_TOPICS}

inventory_input = combined_input(ticket_requests_topic, ticks_topic, payments_topic)
"""The inventory agent's input: ticket-requests, inventory-ticks and payments, co-partitioned."""

notifications_input = combined_input(reservations_topic, orders_topic)
"""The notifications agent's input: reservations and orders, both keyed by event_id."""

_BY_LOGICAL: dict[str, faust.TopicT] = {
    TICKET_REQUESTS: ticket_requests_topic,
    INVENTORY_TICKS: ticks_topic,
    RESERVATIONS: reservations_topic,
    PAYMENTS: payments_topic,
    ORDERS: orders_topic,
    NOTIFICATIONS: notifications_topic,
    DLQ: dlq_topic,
    **retry_topics,
}


def topic_for(logical: str) -> faust.TopicT:
    """The Faust topic of a logical topic name.

    :raises KeyError: the agents do not produce to ``logical``.
    """
    return _BY_LOGICAL[logical]


async def declare_topics() -> None:
    """Create every EventPro topic the agents use that does not exist yet.

    Without this a first send would let the broker auto-create the topic with its default
    partition count, breaking co-partitioning by event_id.
    """
    for topic in _BY_LOGICAL.values():
        await topic.maybe_declare()
