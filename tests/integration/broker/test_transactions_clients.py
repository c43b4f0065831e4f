"""Kafka transactions over TCP with aiokafka's and confluent-kafka's transactional producers and
read_committed consumers of both: visibility, offsets-only commits, fencing, killed producers and
a broker killed in the middle of a transaction."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventpro.broker.process import BrokerProcess

PARTITIONS = 2


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=20)


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermarks (read_uncommitted latest offsets): markers included."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def read_committed_aiokafka(bootstrap: str, topic: str) -> list[bytes]:
    """Every committed value, reading until each partition's position is its high watermark."""
    ends = await end_offsets(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", auto_offset_reset="earliest"
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    values: list[bytes] = []
    deadline = time.monotonic() + 20
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            values.extend(m.value for msgs in batch.values() for m in msgs)
            positions = {tp.partition: await consumer.position(tp) for tp in tps}
            if positions == ends:
                return values
            if time.monotonic() > deadline:
                pytest.fail(f"read_committed consumer stuck at {positions}, end is {ends}")
    finally:
        await consumer.stop()


def read_committed_confluent(bootstrap: str, topic: str, timeout: float = 20) -> list[bytes]:
    """librdkafka reads read_committed by default; reads until positions reach the watermarks."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("ck-reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    tps = [CkTopicPartition(topic, p, 0) for p in range(PARTITIONS)]
    consumer.assign(tps)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            msg = consumer.poll(0.2)
            if msg is not None:
                assert msg.error() is None, msg.error()
                values.append(msg.value())
                continue
            ends = {
                p: consumer.get_watermark_offsets(CkTopicPartition(topic, p), timeout=5)[1]
                for p in range(PARTITIONS)
            }
            positions = {tp.partition: tp.offset for tp in consumer.position(tps)}
            if positions == ends:
                return values
            if time.monotonic() > deadline:
                pytest.fail(f"confluent read_committed stuck at {positions}, end is {ends}")
    finally:
        consumer.close()


async def both_readers(bootstrap: str, topic: str) -> tuple[list[bytes], list[bytes]]:
    aio = await read_committed_aiokafka(bootstrap, topic)
    ck = await asyncio.to_thread(read_committed_confluent, bootstrap, topic)
    return sorted(aio), sorted(ck)


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


async def test_aiokafka_committed_visible_aborted_invisible_offsets_only_commits(
    shared_broker: str,
) -> None:
    topic, source, group = unique("aio-tx"), unique("aio-src"), unique("aio-grp")
    create_topic(shared_broker, topic)
    create_topic(shared_broker, source)
    producer = AIOKafkaProducer(bootstrap_servers=shared_broker, transactional_id=unique("aio"))
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"c1", partition=0)
            await producer.send_and_wait(topic, b"c2", partition=1)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"a1", partition=0)
        await producer.send_and_wait(topic, b"a2", partition=1)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"c3", partition=0)
            await producer.send_offsets_to_transaction({TopicPartition(source, 0): 5}, group)
        async with producer.transaction():  # offsets only, no records
            await producer.send_offsets_to_transaction({TopicPartition(source, 1): 8}, group)
    finally:
        await producer.stop()

    aio, ck = await both_readers(shared_broker, topic)
    assert aio == ck == [b"c1", b"c2", b"c3"]
    # each marker takes an offset: p0 = c1 C a1 A c3 C, p1 = c2 C a2 A
    assert await end_offsets(shared_broker, topic) == {0: 6, 1: 4}
    assert await committed_offsets(shared_broker, group, source) == {0: 5, 1: 8}


def test_confluent_transactions_visibility_offsets_and_fencing(shared_broker: str) -> None:
    topic, source, group = unique("ck-tx"), unique("ck-src"), unique("ck-grp")
    create_topic(shared_broker, topic)
    create_topic(shared_broker, source)
    tid = unique("ck")
    producer = Producer({"bootstrap.servers": shared_broker, "transactional.id": tid})
    producer.init_transactions(20)
    producer.begin_transaction()
    producer.produce(topic, b"c1", partition=0)
    producer.produce(topic, b"c2", partition=1)
    producer.commit_transaction(20)
    producer.begin_transaction()
    producer.produce(topic, b"a1", partition=0)
    assert producer.flush(20) == 0
    producer.abort_transaction(20)

    group_consumer = Consumer(
        {"bootstrap.servers": shared_broker, "group.id": group, "enable.auto.commit": False}
    )
    try:
        metadata = group_consumer.consumer_group_metadata()
        producer.begin_transaction()
        producer.produce(topic, b"c3", partition=1)
        producer.send_offsets_to_transaction([CkTopicPartition(source, 0, 4)], metadata, 20)
        producer.commit_transaction(20)
        producer.begin_transaction()  # offsets only
        producer.send_offsets_to_transaction([CkTopicPartition(source, 1, 6)], metadata, 20)
        producer.commit_transaction(20)
        committed = group_consumer.committed(
            [CkTopicPartition(source, 0), CkTopicPartition(source, 1)], timeout=20
        )
        assert [tp.offset for tp in committed] == [4, 6]
    finally:
        group_consumer.close()

    aio, ck = asyncio.run(both_readers(shared_broker, topic))
    assert aio == ck == [b"c1", b"c2", b"c3"]

    newer = Producer({"bootstrap.servers": shared_broker, "transactional.id": tid})
    newer.init_transactions(20)
    with pytest.raises(KafkaException) as fenced:
        producer.begin_transaction()
        producer.produce(topic, b"zombie", partition=0)
        producer.commit_transaction(20)
    assert fenced.value.args[0].fatal()
    newer.begin_transaction()
    newer.produce(topic, b"c4", partition=0)
    newer.commit_transaction(20)
    aio, ck = asyncio.run(both_readers(shared_broker, topic))
    assert aio == ck == [b"c1", b"c2", b"c3", b"c4"]


async def test_aiokafka_fenced_producer_gets_an_error(shared_broker: str) -> None:
    topic = unique("fence")
    create_topic(shared_broker, topic)
    tid = unique("fence")
    old = AIOKafkaProducer(bootstrap_servers=shared_broker, transactional_id=tid)
    await old.start()
    new = AIOKafkaProducer(bootstrap_servers=shared_broker, transactional_id=tid)
    try:
        await old.begin_transaction()
        await old.send_and_wait(topic, b"zombie", partition=0)
        await new.start()  # re-init aborts the old instance's open transaction
        with pytest.raises(ProducerFenced):
            await old.commit_transaction()
        async with new.transaction():
            await new.send_and_wait(topic, b"live", partition=0)
    finally:
        await new.stop()
        await old.stop()
    assert await read_committed_aiokafka(shared_broker, topic) == [b"live"]


KILLED_PRODUCER = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

async def main():
    bootstrap, topic, tid, timeout_ms = sys.argv[1:5]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=tid, transaction_timeout_ms=int(timeout_ms)
    )
    await producer.start()
    await producer.begin_transaction()
    for p in (0, 1):
        await producer.send_and_wait(topic, b"doomed", partition=p)
    print("SENT", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_doomed_producer(bootstrap: str, topic: str, tid: str, timeout_ms: int) -> None:
    """Run a transactional producer in a child, wait until its records are written, SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PRODUCER, bootstrap, topic, tid, str(timeout_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == b"SENT", line + child.stdout.read()
    finally:
        child.kill()
        child.wait()


async def wait_until(predicate: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def lso_reached_end(bootstrap: str, topic: str) -> bool:
    """Whether read_committed latest offsets (the LSO) equal the high watermarks."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        lso = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    return lso == await end_offsets(bootstrap, topic)


async def test_killed_producer_transaction_is_aborted_after_its_timeout(
    shared_broker: str,
) -> None:
    topic = unique("killed")
    create_topic(shared_broker, topic)
    await asyncio.to_thread(start_doomed_producer, shared_broker, topic, unique("doom"), 1500)
    assert not await lso_reached_end(shared_broker, topic)
    started = time.monotonic()
    await wait_until(lambda: lso_reached_end(shared_broker, topic), 15, "timeout abort")
    assert time.monotonic() - started < 10
    aio, ck = await both_readers(shared_broker, topic)
    assert aio == ck == []
    assert sum((await end_offsets(shared_broker, topic)).values()) == 4  # 2 records + 2 markers


async def test_killed_producer_transaction_is_aborted_when_its_id_reinitialises(
    shared_broker: str,
) -> None:
    topic = unique("reinit")
    create_topic(shared_broker, topic)
    tid = unique("doom")
    await asyncio.to_thread(start_doomed_producer, shared_broker, topic, tid, 600_000)
    assert not await lso_reached_end(shared_broker, topic)
    successor = AIOKafkaProducer(bootstrap_servers=shared_broker, transactional_id=tid)
    await successor.start()
    try:
        assert await lso_reached_end(shared_broker, topic)
        async with successor.transaction():
            await successor.send_and_wait(topic, b"after", partition=1)
    finally:
        await successor.stop()
    aio, ck = await both_readers(shared_broker, topic)
    assert aio == ck == [b"after"]


async def test_broker_killed_mid_transaction_stays_consistent(
    broker_process: BrokerProcess,
) -> None:
    bootstrap = broker_process.bootstrap
    topic, source, group = unique("crash"), unique("crash-src"), unique("crash-grp")
    create_topic(bootstrap, topic)
    create_topic(bootstrap, source)
    tid = unique("crash")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid)
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"before", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"open-1", partition=0)
        await producer.send_and_wait(topic, b"open-2", partition=1)
        await producer.send_offsets_to_transaction({TopicPartition(source, 0): 3}, group)

        await asyncio.to_thread(broker_process.restart, kill=True)

        # the open transaction survived the crash: still open, offsets still pending
        assert not await lso_reached_end(bootstrap, topic)
        assert await committed_offsets(bootstrap, group, source) == {0: None, 1: None}
        await producer.commit_transaction()
    finally:
        await producer.stop()
    aio, ck = await both_readers(bootstrap, topic)
    assert aio == ck == [b"before", b"open-1", b"open-2"]
    assert await committed_offsets(bootstrap, group, source) == {0: 3, 1: None}

    # an aborted transaction across a second crash stays aborted
    again = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid)
    await again.start()
    try:
        await again.begin_transaction()
        await again.send_and_wait(topic, b"doomed", partition=1)
        await again.abort_transaction()
    finally:
        await again.stop()
    await asyncio.to_thread(broker_process.restart, kill=True)
    aio, ck = await both_readers(bootstrap, topic)
    assert aio == ck == [b"before", b"open-1", b"open-2"]
