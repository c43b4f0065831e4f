"""eventpro.produce.RecordBatches through a real aiokafka producer and the embedded broker."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from eventpro.produce import RecordBatches

PARTITIONS = 4


async def _topic(bootstrap: str) -> str:
    name = f"batches-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()
    return name


async def _read(
    bootstrap: str, topic: str, expected: int
) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    """Per partition, (offset, key, value) of the first ``expected`` records of ``topic``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: dict[int, list[tuple[int, bytes | None, bytes | None]]] = defaultdict(list)
    try:
        async with asyncio.timeout(30):
            while sum(map(len, seen.values())) < expected:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    seen[tp.partition] += [(r.offset, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return dict(seen)


@pytest.fixture()
async def producer(shared_broker: str) -> AIOKafkaProducer:
    client = AIOKafkaProducer(
        bootstrap_servers=shared_broker, acks="all", linger_ms=5, max_batch_size=16_384
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def test_records_land_in_order_where_the_client_would_put_them(
    shared_broker: str, producer: AIOKafkaProducer
) -> None:
    topic = await _topic(shared_broker)
    # Where the client's own send puts each key: the keyed records must go to the same place.
    keys = [f"event-{i}".encode() for i in range(12)]
    reference = await asyncio.gather(
        *[await producer.send(topic, b"reference", key=key) for key in keys]
    )
    home = {key: metadata.partition for key, metadata in zip(keys, reference, strict=True)}

    batches = RecordBatches()
    acked: dict[int, list[int]] = defaultdict(list)
    sent: list[tuple[int, bytes | None, bytes | None]] = []
    for i in range(600):  # ~38 KB per partition: more than one 16 KB batch each
        key = keys[i % len(keys)]
        if i % 5 == 0:
            partition, value = i % PARTITIONS, None  # explicit partition, a tombstone
        else:
            partition, value = None, f"value-{i:04d}".encode() * 32
        batches.add(topic, partition, key, value, lambda t, p, o: acked[p].append(o))
        sent.append((home[key] if partition is None else partition, key, value))
    counted: dict[str, int] = defaultdict(int)

    def count(name: str, records: int) -> None:
        counted[name] += records

    futures = await batches.send(producer, count)
    await asyncio.gather(*futures)

    assert len(batches) == 0
    assert len(futures) > PARTITIONS  # some partitions needed several Kafka batches
    assert counted == {topic: 600}
    seen = await _read(shared_broker, topic, len(keys) + 600)
    for partition in range(PARTITIONS):
        records = [(k, v) for _, k, v in seen.get(partition, []) if v != b"reference"]
        assert records == [(k, v) for p, k, v in sent if p == partition]
        # The callback reported each acknowledged batch, the last one at the partition's end.
        offsets = acked[partition]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        assert offsets[-1] == seen[partition][-1][0]
