"""aiokafka (the client under Faust) against the embedded broker over TCP."""

from __future__ import annotations

import asyncio
import sys
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from eventpro.broker.process import BrokerProcess


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_topic(bootstrap: str, name: str, partitions: int, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=dict(configs) or None)]
        )
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes], **kwargs: object) -> list[int]:
    """Send all values with batching (linger) and acks=all; returns their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, **kwargs)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=str(i % 7).encode(), partition=0)
            for i, value in enumerate(values)
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [m.offset for m in metadata]


async def consume_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(values) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


async def test_multi_record_batches_round_trip_with_exact_end_offset(shared_broker: str) -> None:
    topic = unique("rt")
    await create_topic(shared_broker, topic, 1)
    values = [f"record-{i}".encode() * 3 for i in range(1000)]
    offsets = await produce(shared_broker, topic, values)
    assert offsets == list(range(1000))

    consumer = AIOKafkaConsumer(bootstrap_servers=shared_broker)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert (await consumer.end_offsets([tp]))[tp] == 1000
        assert (await consumer.beginning_offsets([tp]))[tp] == 0
    finally:
        await consumer.stop()
    assert await consume_all(shared_broker, topic, 1000) == values


async def test_idempotent_producer_and_auto_created_topic(shared_broker: str) -> None:
    topic = unique("idem")
    values = [f"v{i}".encode() for i in range(300)]
    offsets = await produce(shared_broker, topic, values, enable_idempotence=True)
    assert offsets == list(range(300))
    assert await consume_all(shared_broker, topic, 300) == values


async def test_fetch_long_poll_returns_when_a_record_arrives(shared_broker: str) -> None:
    topic = unique("poll")
    await create_topic(shared_broker, topic, 1)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=shared_broker,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5000,
    )
    await consumer.start()
    try:
        waiting = asyncio.create_task(consumer.getone())
        await asyncio.sleep(0)  # let the fetch go out first
        await produce(shared_broker, topic, [b"wake-up"])
        record = await asyncio.wait_for(waiting, timeout=10)
        assert record.value == b"wake-up"
    finally:
        await consumer.stop()


async def test_offsets_by_timestamp(shared_broker: str) -> None:
    topic = unique("ts")
    await create_topic(shared_broker, topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=shared_broker, acks="all")
    await producer.start()
    try:
        for i, ts in enumerate((1_000_000, 2_000_000, 3_000_000)):
            await producer.send_and_wait(topic, f"{i}".encode(), partition=0, timestamp_ms=ts)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=shared_broker)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        found = await consumer.offsets_for_times({tp: 2_000_000})
        assert found[tp] is not None and found[tp].offset == 1
        late = await consumer.offsets_for_times({tp: 9_000_000})
        assert late[tp] is None
    finally:
        await consumer.stop()


async def test_group_splits_partitions_and_rebalances_when_one_leaves(shared_broker: str) -> None:
    topic = unique("grp")
    group = unique("g")
    await create_topic(shared_broker, topic, 4)

    def make() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=shared_broker,
            group_id=group,
            session_timeout_ms=6000,
            heartbeat_interval_ms=200,
            auto_offset_reset="earliest",
        )

    first, second = make(), make()
    await first.start()
    await second.start()
    try:
        async with asyncio.timeout(30):
            while True:
                await asyncio.gather(first.getmany(timeout_ms=100), second.getmany(timeout_ms=100))
                a, b = first.assignment(), second.assignment()
                if len(a) == 2 and len(b) == 2:
                    break
        assert a.isdisjoint(b)
        assert {tp.partition for tp in a | b} == {0, 1, 2, 3}

        await second.stop()  # sends LeaveGroup
        async with asyncio.timeout(30):
            while len(first.assignment()) != 4:
                await first.getmany(timeout_ms=100)
    finally:
        await first.stop()
        await second.stop()


async def test_committed_offsets_survive_broker_restart(broker_process: BrokerProcess) -> None:
    bootstrap = broker_process.bootstrap
    topic, group = unique("commit"), unique("g")
    await create_topic(bootstrap, topic, 2)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    try:
        await consumer.commit({TopicPartition(topic, 0): 17, TopicPartition(topic, 1): 4})
    finally:
        await consumer.stop()

    broker_process.restart()

    consumer = AIOKafkaConsumer(bootstrap_servers=broker_process.bootstrap, group_id=group)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    try:
        assert await consumer.committed(TopicPartition(topic, 0)) == 17
        assert await consumer.committed(TopicPartition(topic, 1)) == 4
    finally:
        await consumer.stop()


async def test_acknowledged_records_survive_sigkill(broker_process: BrokerProcess) -> None:
    bootstrap = broker_process.bootstrap
    topic = unique("crash")
    await create_topic(bootstrap, topic, 1)
    values = [f"durable-{i}".encode() for i in range(2000)]
    offsets = await produce(bootstrap, topic, values)
    assert offsets[-1] == 1999

    broker_process.restart(kill=True)

    assert await consume_all(broker_process.bootstrap, topic, 2000) == values


CRASHING_MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main():
    consumer = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                                session_timeout_ms=6000, heartbeat_interval_ms=200)
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    print("assigned", flush=True)
    while True:
        await consumer.getmany(timeout_ms=100)

asyncio.run(main())
"""


async def test_member_killed_without_leave_group_is_evicted(shared_broker: str) -> None:
    topic, group = unique("evict"), unique("g")
    await create_topic(shared_broker, topic, 4)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHING_MEMBER,
        shared_broker,
        topic,
        group,
        stdout=asyncio.subprocess.PIPE,
    )
    survivor = AIOKafkaConsumer(
        topic,
        bootstrap_servers=shared_broker,
        group_id=group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=200,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"assigned"
        await survivor.start()
        async with asyncio.timeout(30):
            while len(survivor.assignment()) != 2:
                await survivor.getmany(timeout_ms=100)
        child.kill()  # SIGKILL: no LeaveGroup is sent
        await child.wait()
        async with asyncio.timeout(30):
            while len(survivor.assignment()) != 4:
                await survivor.getmany(timeout_ms=100)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await survivor.stop()
