"""Produce records straight through the Kafka client, past Faust's per-record send path.

Faust hands every record it produces, table changelog writes and topic sends alike, through
a ``PendingMessage``, a ``FutureMessage``, its producer buffer, ``Topic.publish_message``, the
client's per-record ``send`` and a callback per acknowledged record; for a changelog record
that callback also writes the table's persisted offset to RocksDB. py-spy put a quarter of
the worker's CPU there (the inventory agent's outcomes and four tables' changelogs).

:func:`batch_producer` gives the Kafka client when that is allowed (at least once). The
inventory and analytics agents know which records they write together and when they need
the broker's acknowledgement, so they gather them in a :class:`RecordBatches` (changelog
records through :mod:`eventpro.tables.changelog`) and :meth:`RecordBatches.send` appends
each partition's records to one
:class:`aiokafka.producer.message_accumulator.BatchBuilder` and hands that to
``AIOKafkaProducer.send_batch``: one future per partition instead of several objects and
callbacks per record. Records of one partition keep their order; the producer's own
``flush`` (which Faust runs before it commits source offsets) waits for them like for any
other record. A changelog partition's persisted offset is written once per acknowledged
batch (``on_acked``), not once per record: an offset that lags only means recovery reads a
little more of the changelog. The payments and notifications agents, which wait for each
output's acknowledgement, hand single records to the client's own ``send``
(:mod:`eventpro.agents.output`).

Not for transactions: under ``exactly_once`` Faust's own path puts each record in the
transaction of its source partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import islice
from typing import Any, Protocol

import faust
from aiokafka.structs import RecordMetadata
from faust.types.enums import ProcessingGuarantee

from eventpro.topics import partition_for_key
from eventpro.transport import EventProProducer

__all__ = ("BatchProducer", "RecordBatches", "SentCounter", "batch_producer")

OnAcked = Callable[[str, int, int], None]
"""Called with (topic, partition, offset of the last record) once a batch is acknowledged."""

SentCounter = Callable[[str, int], None]
"""Called with (topic, records) for each partition batch handed to the producer (metrics)."""


class BatchProducer(Protocol):
    """The part of :class:`aiokafka.AIOKafkaProducer` that :class:`RecordBatches` uses."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...

    async def partitions_for(self, topic: str) -> Any: ...

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...

    def _partition(
        self,
        topic: str,
        partition: int | None,
        key: Any,
        value: Any,
        serialized_key: bytes | None,
        serialized_value: bytes | None,
    ) -> int: ...


def batch_producer(app: faust.App) -> BatchProducer | None:
    """The Kafka client to produce through directly, or ``None`` when Faust must send: under
    ``exactly_once`` (each record goes in its source partition's transaction), before the
    producer started, or on another transport (agent tests)."""
    producer = app.producer
    if app.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE:
        return None
    if not isinstance(producer, EventProProducer):
        return None
    return producer.kafka_producer


class RecordBatches:
    """Records to produce, sent per topic partition in the order they were added.

    A record added without a partition goes where the producer's partitioner puts its key
    (the partition Faust's ``Topic.send`` would have picked).
    """

    __slots__ = ("_acked", "_records")

    def __init__(self) -> None:
        self._records: list[tuple[str, int | None, bytes | None, bytes | None]] = []
        self._acked: dict[tuple[str, int], OnAcked] = {}

    def __len__(self) -> int:
        return len(self._records)

    def add(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes | None,
        on_acked: OnAcked | None = None,
    ) -> None:
        """Queue one record (``value`` ``None``: a tombstone).

        :param on_acked: with a partition: called once per batch of that partition the
            broker acknowledged, with the offset of its last record (the first one given for
            a partition is kept).
        """
        self._records.append((topic, partition, key, value))
        if on_acked is not None and partition is not None:
            self._acked.setdefault((topic, partition), on_acked)

    async def send(
        self, producer: BatchProducer, count_sent: SentCounter | None = None
    ) -> list[asyncio.Future[Any]]:
        """Hand every queued record to ``producer``; returns a future per Kafka batch, each
        resolved when the broker acknowledged it. The queue is empty afterwards."""
        records, acked = self._records, self._acked
        self._records, self._acked = [], {}
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), pending in (await _by_partition(producer, records)).items():
            on_acked = acked.get((topic, partition))
            start = 0
            while start < len(pending):
                # A builder takes records until it is full; it always takes its first one.
                batch = producer.create_batch()
                end = start
                for key, value in islice(pending, start, None):
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        break
                    end += 1
                future = await producer.send_batch(batch, topic, partition=partition)
                if on_acked is not None:
                    future.add_done_callback(_report_last(on_acked, topic, partition, end - start))
                futures.append(future)
                if count_sent is not None:
                    count_sent(topic, end - start)
                start = end
        return futures


async def _by_partition(
    producer: BatchProducer, records: list[tuple[str, int | None, bytes | None, bytes | None]]
) -> dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]]:
    """``records`` grouped by topic partition, in order; a record without a partition gets
    the one its key hashes to."""
    grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    counts: dict[str, int] = {}
    for topic, partition, key, value in records:
        if partition is None:
            count = counts.get(topic)
            if count is None:  # waits for the topic's metadata
                count = counts[topic] = len(await producer.partitions_for(topic))
            if key is None:
                partition = producer._partition(topic, None, None, None, key, value)
            else:  # the client's default partitioner, memoised
                partition = partition_for_key(key, count)
        where = (topic, partition)
        group = grouped.get(where)
        if group is None:
            group = grouped[where] = []
        group.append((key, value))
    return grouped


def _report_last(
    on_acked: OnAcked, topic: str, partition: int, records: int
) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        metadata: RecordMetadata = future.result()
        on_acked(topic, partition, metadata.offset + records - 1)

    return done
