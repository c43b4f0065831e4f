"""Create every topic a worker uses, with the right partition count, before it subscribes.

Kafka (and the embedded broker) auto-create a topic named in a metadata request with the
broker's default partition count. A worker's consumer asks for its topics' metadata early, so
without this step ``ticket-requests`` or a changelog could be born with one partition and
co-partitioning by event_id would silently break. Runs from ``EventProApp.on_start``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from eventpro.security import aiokafka_security_kwargs
from eventpro.settings import Settings
from eventpro.topics import all_topics

__all__ = ("TopicRequest", "ensure_topics", "required_topics")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicRequest:
    """A topic to create if missing."""

    name: str
    partitions: int
    configs: tuple[tuple[str, str], ...]


def required_topics(
    settings: Settings, tables: Iterable[faust.types.CollectionT]
) -> list[TopicRequest]:
    """EventPro's topics plus the changelog topics of ``tables``."""
    wanted = [
        TopicRequest(
            spec.name,
            spec.partitions or settings.partitions,
            (("cleanup.policy", spec.cleanup_policy), ("retention.ms", str(spec.retention_ms))),
        )
        for spec in all_topics(settings)
    ]
    for table in tables:
        topic = table.changelog_topic
        policies = [
            p for p, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on
        ]
        configs: list[tuple[str, str]] = [("cleanup.policy", ",".join(policies) or "compact")]
        if topic.retention is not None:
            configs.append(("retention.ms", str(int(topic.retention * 1000))))
        wanted.append(
            TopicRequest(
                topic.get_topic_name(), topic.partitions or settings.partitions, tuple(configs)
            )
        )
    return wanted


def _bootstrap(broker_url: str) -> list[str]:
    return [part.split("://", 1)[-1] for part in broker_url.replace(";", ",").split(",") if part]


async def ensure_topics(settings: Settings, wanted: list[TopicRequest]) -> list[str]:
    """Create the topics of ``wanted`` that do not exist; returns the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=_bootstrap(settings.broker_url), **aiokafka_security_kwargs(settings)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if not missing:
            return []
        new_topics = [
            NewTopic(
                t.name,
                t.partitions,
                settings.replication_factor,
                topic_configs=dict(t.configs),
            )
            for t in missing
        ]
        try:
            await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            logger.info("some topics were created concurrently by another worker")
        names = [t.name for t in missing]
        logger.info("created topics: %s", ", ".join(names))
        return names
    finally:
        await admin.close()
