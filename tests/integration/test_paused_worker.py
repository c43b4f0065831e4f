"""A worker paused past its session timeout (SIGSTOP: a VM pause, a starved process, a host
cut off from the broker) loses its partitions to another worker; when it runs again it must
not process the records it fetches for them before it learns that (a "zombie" writing from
tables nobody updates any more), and its API must not answer from those tables.

Every outcome has a deterministic envelope id, so a zombie's decisions show up as a second
record with an id already on the topic. The test waits for every commit before pausing and
before resuming, and counts only repeats emitted after the resume: the other worker may repeat
a few while it takes the partitions over (at least once, same ids).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient
from support.cluster import WorkerFactory, group_lag
from support.waiting import wait_for

from eventpro.processes import WorkerProcess
from eventpro.schemas import decode

PARTITIONS = 4
EVENTS = 8
REQUESTS_WHILE_PAUSED = 5
INPUTS = ("ticket-requests", "reservations", "payments", "orders")
OUTCOMES = ("reservations", "orders")


async def _json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json(content_type=None)


def _members(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    stable = str(described.state).endswith("STABLE")
    return len(described.members) if stable else -1


async def _ready(http: aiohttp.ClientSession, *workers: WorkerProcess) -> bool:
    answers = [await _json(http, f"{worker.url}/ready") for worker in workers]
    return all(status == 200 and body["assigned_partitions"] for status, body in answers)


async def _request(http: aiohttp.ClientSession, worker: WorkerProcess, event_id: str) -> str:
    body = {"event_id": event_id, "user_id": f"u-{uuid.uuid4().hex[:6]}", "quantity": 1}
    async with http.post(f"{worker.url}/api/v1/ticket-requests", json=body) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["request_id"])


async def _confirmed(
    http: aiohttp.ClientSession, worker: WorkerProcess, requests: dict[str, str]
) -> bool:
    for request_id, event_id in requests.items():
        url = f"{worker.url}/api/v1/events/{event_id}/requests/{request_id}"
        status, body = await _json(http, url)
        if status != 200 or body.get("status") != "confirmed":
            return False
    return True


async def _outcomes(factory: WorkerFactory) -> dict[str, list[tuple[datetime, str]]]:
    """Every record on the outcome topics by envelope id: when it occurred, what it says."""
    consumer = AIOKafkaConsumer(bootstrap_servers=factory.broker, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(factory.topic(t), p) for t in OUTCOMES for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        seen: dict[str, list[tuple[datetime, str]]] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    envelope = decode(record.value)
                    request_id = getattr(envelope.data, "request_id", "?")
                    text = f"{envelope.event_type} {request_id}@{envelope.occurred_at.time()}"
                    seen.setdefault(envelope.event_id, []).append((envelope.occurred_at, text))
        return seen
    finally:
        await consumer.stop()


async def test_a_worker_paused_past_its_session_timeout_does_not_process_as_a_zombie(
    worker_factory: WorkerFactory,
) -> None:
    first = worker_factory()
    second = worker_factory()
    group = worker_factory.app_id
    inputs = [worker_factory.topic(t) for t in INPUTS]

    async def committed() -> bool:
        return await group_lag(worker_factory.broker, group, inputs, PARTITIONS) == 0

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        await wait_for(
            lambda: _in_thread(_members, worker_factory.broker, group, equals=2),
            60,
            "both workers in the group",
        )
        await wait_for(lambda: _ready(http, first, second), 60, "both workers ready")
        for worker in (first, second):  # heartbeats confirm each worker's lease
            _, body = await _json(http, f"{worker.url}/ready")
            assert body["group_lease_age_s"] is not None, body
            assert body["group_lease_age_s"] < 5, body
        events = [f"zombie-{i}-{uuid.uuid4().hex[:6]}" for i in range(EVENTS)]
        for event_id in events:
            body = {"name": event_id, "capacity": 100, "price_cents": 100, "event_id": event_id}
            async with http.post(f"{first.url}/api/v1/events", json=body) as response:
                assert response.status == 201, await response.text()
        before = {await _request(http, first, event_id): event_id for event_id in events}
        await wait_for(lambda: _confirmed(http, first, before), 60, "orders before the pause")
        await wait_for(committed, 30, "every record committed before the pause")

        assert first.pid is not None
        os.kill(first.pid, signal.SIGSTOP)
        try:
            await wait_for(
                lambda: _in_thread(_members, worker_factory.broker, group, equals=1),
                60,
                "the group to evict the paused worker",
            )
            await wait_for(lambda: _ready(http, second), 60, "the other worker ready")
            during = {
                await _request(http, second, event_id): event_id
                for event_id in events
                for _ in range(REQUESTS_WHILE_PAUSED)
            }
            await wait_for(lambda: _confirmed(http, second, during), 60, "orders while paused")
            await wait_for(committed, 30, "every record committed while paused")
        finally:
            resumed_at = datetime.now(UTC)
            os.kill(first.pid, signal.SIGCONT)

        # At once, before it can have rejoined: it must not answer from its frozen tables.
        right_after = [await _json(http, f"{first.url}/api/v1/events/{e}") for e in events]
        await wait_for(
            lambda: _in_thread(_members, worker_factory.broker, group, equals=2),
            60,
            "the resumed worker back in the group",
        )
        await wait_for(committed, 30, "every record committed after the resume")

    # An outcome emitted again after the resume came from the resumed worker (the other one
    # may repeat some while it takes the partitions over: at least once, same ids).
    outcomes = await _outcomes(worker_factory)
    again = {
        event_id: [text for _, text in records]
        for event_id, records in outcomes.items()
        if len(records) > 1 and max(when for when, _ in records) >= resumed_at
    }
    assert not again, f"outcomes emitted again after the resume: {again}"
    assert len(outcomes) >= 2 * len(during)  # SeatsReserved and OrderConfirmed of each request
    assert [status for status, _ in right_after] == [503] * EVENTS, right_after


async def _in_thread(probe: Any, *args: Any, equals: int) -> bool:
    return await asyncio.to_thread(probe, *args) == equals
