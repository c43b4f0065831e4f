"""librdkafka clients against the embedded broker: confluent-kafka 2.16 and Debian's kcat."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

KCAT = shutil.which("kcat")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10)
    futures[name].result(timeout=20)
    listed = admin.list_topics(timeout=10)
    assert name in listed.topics
    assert len(listed.topics[name].partitions) == partitions


def produce(bootstrap: str, topic: str, values: list[bytes], **conf: object) -> None:
    errors: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all", **conf})
    for i, value in enumerate(values):
        producer.produce(
            topic,
            value,
            key=f"k{i % 5}".encode(),
            partition=0,
            headers=[("trace", b"t1")],
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        producer.poll(0)
    assert producer.flush(20) == 0
    assert errors == []


def consume(bootstrap: str, topic: str, expected: int, group: str) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value())
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed[0].offset == expected
    finally:
        consumer.close()
    return values


def test_confluent_round_trip_watermarks_and_group_commit(shared_broker: str) -> None:
    topic = unique("ck")
    create_topic(shared_broker, topic, 3)
    values = [f"ck-{i}".encode() for i in range(500)]
    produce(shared_broker, topic, values)

    consumer = Consumer({"bootstrap.servers": shared_broker, "group.id": unique("wm")})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, 500)
    finally:
        consumer.close()
    assert consume(shared_broker, topic, 500, unique("g")) == values


def test_confluent_idempotent_producer(shared_broker: str) -> None:
    topic = unique("ck-idem")
    create_topic(shared_broker, topic, 1)
    values = [f"idem-{i}".encode() for i in range(200)]
    produce(shared_broker, topic, values, **{"enable.idempotence": True})
    assert consume(shared_broker, topic, 200, unique("g")) == values


@pytest.fixture()
def kcat() -> str:
    assert KCAT, "kcat is installed by scripts/install-system-deps.sh (make deps)"
    return KCAT


def run_kcat(kcat: str, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        [kcat, *args], input=stdin, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_kcat_lists_produces_and_consumes(shared_broker: str, kcat: str) -> None:
    topic = unique("kcat")
    lines = [f"line-{i}" for i in range(50)]
    run_kcat(
        kcat, "-b", shared_broker, "-P", "-t", topic, "-p", "0", stdin="\n".join(lines).encode()
    )

    listing = run_kcat(kcat, "-b", shared_broker, "-L", "-t", topic)
    assert f'topic "{topic}" with 1 partitions' in listing

    out = run_kcat(kcat, "-b", shared_broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
    assert out.split() == lines

    tail = run_kcat(kcat, "-b", shared_broker, "-C", "-t", topic, "-o", "-3", "-e", "-q")
    assert tail.split() == lines[-3:]


def test_admin_tooling_lists_describes_groups_and_deletes_topics(shared_broker: str) -> None:
    topic, group = unique("admin"), unique("admin-g")
    create_topic(shared_broker, topic, 2)
    produce(shared_broker, topic, [b"x"] * 3)
    consumer = Consumer(
        {"bootstrap.servers": shared_broker, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment()
        admin = AdminClient({"bootstrap.servers": shared_broker})
        listed = admin.list_consumer_groups().result(timeout=20)
        assert group in {g.group_id for g in listed.valid}
        described = admin.describe_consumer_groups([group])[group].result(timeout=20)
        assert described.group_id == group
        assert len(described.members) == 1
        assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == {0, 1}
    finally:
        consumer.close()
    admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=20)
    assert topic not in admin.list_topics(timeout=10).topics
