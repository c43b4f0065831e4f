"""`eventpro dlq list|replay` against the embedded broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventpro.schemas import DeadLetter, Envelope, encode


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventpro", "dlq", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def put_letters(bootstrap: str, dlq: str, origin: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, reason in enumerate(("invalid_json", "wrong_partition", "invalid_json")):
            letter = DeadLetter.from_record(
                reason=reason,
                error=f"error {i}",
                attempts=1,
                agent="eventpro.agents.inventory",
                topic=origin,
                partition=0,
                offset=i,
                key=b"ev-1",
                value=f"original-{i}".encode(),
                correlation_id=f"corr-{i}",
            )
            await producer.send_and_wait(dlq, encode(Envelope.new(letter, source="test")))
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        async with asyncio.timeout(30):
            while len(values) < expected:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


def test_list_filters_and_replay_sends_originals_back(shared_broker: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    dlq, origin = f"dlq-{suffix}", f"origin-{suffix}"
    asyncio.run(put_letters(shared_broker, dlq, origin))

    listed = run_cli("list", "--broker", shared_broker, "--topic", dlq, "--json")
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [x["reason"] for x in letters] == ["invalid_json", "wrong_partition", "invalid_json"]
    assert letters[1]["correlation_id"] == "corr-1"

    only = run_cli("list", "--broker", shared_broker, "--topic", dlq, "--reason", "invalid_json")
    assert only.returncode == 0 and len(only.stdout.splitlines()) == 2

    dry = run_cli("replay", "--broker", shared_broker, "--topic", dlq, "--dry-run")
    assert "would replay 3 record(s)" in dry.stdout, dry.stderr

    replay = run_cli(
        "replay",
        "--broker",
        shared_broker,
        "--topic",
        dlq,
        "--reason",
        "invalid_json",
        "--no-progress",
    )
    assert replay.returncode == 0, replay.stderr
    assert f"replayed 2 record(s) ({origin}: 2)" in replay.stdout
    assert sorted(asyncio.run(read_all(shared_broker, origin, 2))) == [b"original-0", b"original-2"]


def test_missing_topic_is_a_clear_error(shared_broker: str) -> None:
    result = run_cli("list", "--broker", shared_broker, "--topic", f"nope-{uuid.uuid4().hex}")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
