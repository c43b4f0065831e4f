"""Topic catalogue and Kafka's default partitioner."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from eventpro.settings import Settings
from eventpro.topics import (
    DLQ,
    INVENTORY_TICKS,
    PAYMENTS,
    RETRY_DELAYS_MS,
    RETRY_TOPICS,
    TICKET_REQUESTS,
    all_topics,
    murmur2,
    partition_for_key,
    topic_spec,
)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"", 275646681),
    ],
)
def test_murmur2_matches_java(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_for_key_java_vector() -> None:
    assert partition_for_key(b"21", 4) == (-973932308 & 0x7FFFFFFF) % 4


def test_partition_for_key_matches_aiokafka() -> None:
    rng = random.Random(42)
    partitioner = DefaultPartitioner()
    for _ in range(2_000):
        key = rng.randbytes(rng.randint(0, 40))
        n = rng.randint(1, 64)
        assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key)
        assert partition_for_key(key, n) == partitioner(key, list(range(n)), list(range(n)))


def test_partition_for_key_rejects_zero_partitions() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_for_key(b"x", 0)


def test_all_topics_use_prefix_and_partitions() -> None:
    settings = Settings(topic_prefix="t1-", partitions=6)
    topics = all_topics(settings)
    names = [t.name for t in topics]
    assert len(set(names)) == len(names)
    assert all(name.startswith("t1-") for name in names)
    logical = {t.logical for t in topics}
    assert {TICKET_REQUESTS, PAYMENTS, INVENTORY_TICKS, DLQ, *RETRY_TOPICS} <= logical
    assert {"reservations", "orders", "notifications"} <= logical
    for spec in topics:
        assert spec.retention_ms > 0
        assert spec.description
        assert spec.cleanup_policy == "delete"


def test_inventory_inputs_are_co_partitioned() -> None:
    settings = Settings(partitions=8)
    inputs = [topic_spec(settings, name) for name in (TICKET_REQUESTS, PAYMENTS, INVENTORY_TICKS)]
    assert {spec.partitions for spec in inputs} == {8}
    assert topic_spec(settings, TICKET_REQUESTS).key == "event_id"
    assert topic_spec(settings, PAYMENTS).key == "event_id"


def test_retry_topics_back_off() -> None:
    assert len(RETRY_DELAYS_MS) == len(RETRY_TOPICS)
    assert list(RETRY_DELAYS_MS) == sorted(RETRY_DELAYS_MS)


def test_unknown_topic() -> None:
    with pytest.raises(KeyError, match="unknown topic"):
        topic_spec(Settings(), "nope")
