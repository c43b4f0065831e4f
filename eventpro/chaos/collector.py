"""Reads the saga's topics incrementally, across broker restarts, keeping every record.

The consumer is closed before the broker is killed and reopened at the saved positions after
it is back, so no aiokafka reconnect loop runs while the broker is down.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition

from eventpro.invariants import Record, SagaRecords
from eventpro.schemas import decode
from eventpro.schemas.errors import SchemaError

__all__ = ("SAGA_TOPICS", "TopicCollector")

logger = logging.getLogger(__name__)

SAGA_TOPICS: tuple[str, ...] = (
    "ticket-requests",
    "reservations",
    "payments",
    "orders",
    "notifications",
)


class TopicCollector:
    """Every decodable record of ``SAGA_TOPICS`` read so far, with raw key and value."""

    def __init__(self, bootstrap: str, prefix: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.partitions = partitions
        self.records: dict[str, list[Record]] = defaultdict(list)
        self.raw: dict[tuple[str, int, int], tuple[bytes | None, bytes]] = {}
        self.undecodable = 0
        self._positions: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    def _tps(self) -> list[TopicPartition]:
        return [
            TopicPartition(f"{self.prefix}{name}", p)
            for name in SAGA_TOPICS
            for p in range(self.partitions)
        ]

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=10_000,
            )
            await consumer.start()
            tps = self._tps()
            consumer.assign(tps)
            for tp in tps:
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        """Remember the positions and disconnect (before the broker goes away)."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def drain(self) -> int:
        """Read up to the current end of every partition; returns how many records were new."""
        consumer = await self._open()
        tps = self._tps()
        ends = await consumer.end_offsets(tps)
        new = 0
        while True:
            behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            if not behind:
                return new
            batches = await consumer.getmany(*behind, timeout_ms=200)
            for tp, batch in batches.items():
                logical = tp.topic.removeprefix(self.prefix)
                for msg in batch:
                    self._positions[tp] = msg.offset + 1
                    new += 1
                    if msg.value is None:
                        continue
                    try:
                        env = decode(msg.value)
                    except SchemaError:
                        self.undecodable += 1
                        continue
                    self.records[logical].append(Record(logical, tp.partition, msg.offset, env))
                    self.raw[(logical, tp.partition, msg.offset)] = (msg.key, msg.value)

    def snapshot(self) -> SagaRecords:
        """What was read so far, as :class:`SagaRecords` (a copy)."""
        return SagaRecords(
            {name: tuple(recs) for name, recs in self.records.items()}, self.undecodable
        )
