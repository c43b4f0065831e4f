"""Operator tools for the dead-letter topic: list what is there, replay it after a fix.

Every dead letter is a :class:`~eventpro.schemas.DeadLetter` naming the record's original
topic, partition, offset, key and bytes, the agent that gave up, the reason, the error, the
attempt count and the correlation id. Replaying produces the original key and bytes to the
original topic again (Kafka's default partitioner picks the partition from the key), where
the idempotent agents process it like any other record. Replaying twice is harmless.

Intended CLI (the ``eventpro`` command wires these functions)::

    eventpro dlq list   [--broker 127.0.0.1:9092] [--topic dlq] [--reason R] [--agent A]
                        [--source-topic T] [--correlation-id C] [--from-offset N]
                        [--to-offset N] [--json]
    eventpro dlq replay [--broker ...] [same filters] [--dry-run] [--no-progress]

``--topic`` defaults to the settings' prefixed ``dlq``; ``list`` prints one line per letter
(offset, reason, agent, attempts, source coordinates, correlation id, error) or JSON lines;
``replay`` shows a progress bar and prints how many records went to which topic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from tqdm import tqdm

from eventpro.exceptions import EventProError
from eventpro.schemas import DeadLetter, SchemaError, decode
from eventpro.topics import DLQ

__all__ = (
    "DeadLetterEntry",
    "DeadLetterFilter",
    "DlqError",
    "ReplayReport",
    "list_dead_letters",
    "replay_dead_letters",
)

logger = logging.getLogger(__name__)

REPLAYED_HEADER = "eventpro-replayed-from"


class DlqError(EventProError):
    """The dead-letter topic could not be read (missing topic, broker unreachable).

    Check ``--broker`` and ``--topic`` (with the deployment's topic prefix).
    """


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One dead letter and where it sits in the DLQ topic."""

    partition: int
    offset: int
    occurred_at: datetime
    letter: DeadLetter

    def summary(self) -> str:
        """One line for humans."""
        letter = self.letter
        return (
            f"{self.partition}:{self.offset} {letter.reason} agent={letter.agent} "
            f"attempts={letter.attempts} from={letter.topic}[{letter.partition}]@{letter.offset} "
            f"correlation_id={letter.correlation_id} error={letter.error}"
        )


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to list or replay; unset fields match everything."""

    reason: str | None = None
    agent: str | None = None
    source_topic: str | None = None
    correlation_id: str | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    def matches(self, entry: DeadLetterEntry) -> bool:
        """True when ``entry`` passes every set criterion (offset bounds are inclusive)."""
        letter = entry.letter
        return (
            (self.reason is None or letter.reason == self.reason)
            and (self.agent is None or letter.agent == self.agent)
            and (self.source_topic is None or letter.topic == self.source_topic)
            and (self.correlation_id is None or letter.correlation_id == self.correlation_id)
            and (self.from_offset is None or entry.offset >= self.from_offset)
            and (self.to_offset is None or entry.offset <= self.to_offset)
        )


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay sent back: record count per original topic."""

    replayed: int
    by_topic: dict[str, int] = field(default_factory=dict)


async def list_dead_letters(
    bootstrap: str,
    filters: DeadLetterFilter | None = None,
    *,
    topic: str = DLQ,
    timeout_seconds: float = 30.0,
    client_options: Mapping[str, Any] | None = None,
) -> list[DeadLetterEntry]:
    """Every dead letter in ``topic`` (from the beginning to the current end) that matches.

    :param client_options: extra aiokafka keyword arguments, e.g.
        ``eventpro.security.aiokafka_security_kwargs(settings)`` for TLS/SASL clusters.
    :raises DlqError: the topic does not exist or the broker cannot be reached.
    """
    wanted = filters or DeadLetterFilter()
    options = dict(client_options or {})
    ids = await _partitions(bootstrap, topic, options)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ids]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        entries: list[DeadLetterEntry] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=int(timeout_seconds * 1000))
            if not batch:
                raise DlqError(f"timed out reading {topic!r}: {len(remaining)} partitions unread")
            for tp, messages in batch.items():
                for message in messages:
                    entry = _entry(message.partition, message.offset, message.value)
                    if entry is not None and wanted.matches(entry):
                        entries.append(entry)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return entries
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str, options: dict[str, Any]) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    try:
        await admin.start()
    except Exception as exc:
        raise DlqError(f"cannot reach the broker at {bootstrap}: {exc!r}") from exc
    try:
        if topic not in await admin.list_topics():
            raise DlqError(f"topic {topic!r} does not exist on {bootstrap}; check --topic")
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    ids = sorted(
        int(p["partition"] if "partition" in p else p["partition_index"])
        for p in described["partitions"]
    )
    if not ids:
        raise DlqError(f"topic {topic!r} has no partitions on {bootstrap}")
    return ids


def _entry(partition: int, offset: int, value: bytes | None) -> DeadLetterEntry | None:
    try:
        envelope = decode(value or b"")
    except SchemaError as exc:
        logger.warning("dlq record %d@%d is not a DeadLetter, skipped: %s", partition, offset, exc)
        return None
    if not isinstance(envelope.data, DeadLetter):
        logger.warning("dlq record %d@%d is a %s, skipped", partition, offset, envelope.event_type)
        return None
    return DeadLetterEntry(partition, offset, envelope.occurred_at, envelope.data)


async def replay_dead_letters(
    bootstrap: str,
    filters: DeadLetterFilter | None = None,
    *,
    topic: str = DLQ,
    progress: bool = True,
    dry_run: bool = False,
    client_options: Mapping[str, Any] | None = None,
) -> ReplayReport:
    """Produce the original key and bytes of every matching dead letter to its original topic.

    :param progress: show a tqdm progress bar on stderr.
    :param dry_run: count what would be replayed, send nothing.
    :param client_options: extra aiokafka keyword arguments (TLS/SASL).
    :raises DlqError: the DLQ topic cannot be read.
    """
    entries = await list_dead_letters(
        bootstrap, filters, topic=topic, client_options=client_options
    )
    counts: Counter[str] = Counter()
    if dry_run:
        counts.update(entry.letter.topic for entry in entries)
        return ReplayReport(len(entries), dict(counts))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **dict(client_options or {})
    )
    await producer.start()
    try:
        with tqdm(total=len(entries), desc="replaying", unit="rec", disable=not progress) as bar:
            for entry in entries:
                letter = entry.letter
                origin = f"{topic}[{entry.partition}]@{entry.offset}".encode()
                await producer.send_and_wait(
                    letter.topic,
                    value=letter.original(),
                    key=letter.original_key(),
                    headers=[(REPLAYED_HEADER, origin)],
                )
                counts[letter.topic] += 1
                logger.info(
                    "replayed %s to %s correlation_id=%s",
                    origin.decode(),
                    letter.topic,
                    letter.correlation_id,
                )
                bar.update(1)
    finally:
        await producer.stop()
    return ReplayReport(sum(counts.values()), dict(counts))
