"""The changelogs that the inventory and analytics agents produce themselves in Kafka batches
(eventpro.produce) are complete: a worker with an empty data dir rebuilds the same tables and
sales windows from them, and a stopped worker's stores remember how far each changelog
partition is stored."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import AccessType, Options, Rdict
from support.cluster import WorkerFactory
from support.waiting import wait_for

from eventpro.tables.ticketing import (
    HOLDS_TABLE,
    INVENTORY_TABLE,
    REQUEST_STATUS_TABLE,
    USER_TICKETS_TABLE,
)

CAPACITY = 25
REQUESTS = 40
TABLES = (INVENTORY_TABLE, HOLDS_TABLE, USER_TICKETS_TABLE, REQUEST_STATUS_TABLE)
OFFSET_KEY = b"__faust\0offset__"
"""Where Faust's RocksDB store keeps a partition's persisted changelog offset."""


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json() if response.status == 200 else None


async def _answers(
    http: aiohttp.ClientSession, base: str, event_id: str, request_ids: list[str]
) -> dict[str, Any] | None:
    """Every request's status and then the event's counters and sales windows, once every
    request is final (nothing changes the counters after that) and counted."""
    statuses = {}
    for request_id in request_ids:
        body = await _get(http, f"{base}/api/v1/events/{event_id}/requests/{request_id}")
        if body is None or body["status"] not in {"confirmed", "rejected", "failed"}:
            return None
        statuses[request_id] = (body["status"], body.get("ticket_ids"))
    event = await _get(http, f"{base}/api/v1/events/{event_id}")
    sales = await _get(http, f"{base}/api/v1/events/{event_id}/sales?window=60")
    if event is None or sales is None:
        return None
    if sum(row["sold"] for row in sales) != event["sold"]:
        return None  # analytics counts in batches: not caught up yet
    return {"event": event, "statuses": statuses, "sales": sales}


async def _changelog_ends(bootstrap: str, app_id: str) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [
            TopicPartition(f"{app_id}-{table}-changelog", p) for table in TABLES for p in range(4)
        ]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {(tp.topic.removeprefix(f"{app_id}-"), tp.partition): end for tp, end in ends.items()}


def _persisted_offsets(data_dir: Path) -> dict[tuple[str, int], int]:
    """(table changelog, partition) -> persisted offset, read from a stopped worker's stores."""
    found = {}
    options = Options(raw_mode=True)
    for table in TABLES:
        for partition in range(4):
            paths = list(data_dir.rglob(f"{table}-{partition}.db"))
            if not paths:
                continue
            (path,) = paths
            # request-status is a TTL store (each value carries its write time); the worker
            # is stopped, so opening it for writing takes no lock from anyone.
            access = (
                AccessType.with_ttl(3600)
                if table == REQUEST_STATUS_TABLE
                else AccessType.read_only()
            )
            db = Rdict(str(path), options=options, access_type=access)
            try:
                offset = db.get(OFFSET_KEY)
            finally:
                db.close()
            if offset is not None:
                found[(f"{table}-changelog", partition)] = int(offset)
    return found


async def test_a_fresh_worker_rebuilds_the_tables_from_their_changelogs(
    worker_factory: WorkerFactory,
) -> None:
    first = worker_factory()
    event_id = f"recover-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        body = {"name": event_id, "capacity": CAPACITY, "price_cents": 100, "event_id": event_id}
        async with http.post(f"{first.url}/api/v1/events", json=body) as response:
            assert response.status == 201, await response.text()
        request_ids = []
        for i in range(REQUESTS):
            body = {"event_id": event_id, "user_id": f"user-{i}", "quantity": 1}
            async with http.post(f"{first.url}/api/v1/ticket-requests", json=body) as response:
                assert response.status == 202, await response.text()
                request_ids.append((await response.json())["request_id"])

        async def first_answers() -> dict[str, Any] | None:
            return await _answers(http, first.url, event_id, request_ids)

        before = await wait_for(first_answers, 60, "every request final on the first worker")
        sold = before["event"]["sold"]
        assert 0 < sold <= CAPACITY
        assert sum(s == "confirmed" for s, _ in before["statuses"].values()) == sold

        first.stop()
        ends = await _changelog_ends(worker_factory.broker, worker_factory.app_id)
        written = {where: end - 1 for where, end in ends.items() if end > 0}
        assert {table for table, _ in written} == {f"{t}-changelog" for t in TABLES}
        # Every acknowledged changelog batch moved its partition's persisted offset.
        assert _persisted_offsets(first.data_dir) == written

        second = worker_factory()  # an empty data dir: everything comes from the changelogs

        async def second_answers() -> dict[str, Any] | None:
            answers = await _answers(http, second.url, event_id, request_ids)
            return answers if answers == before else None

        try:
            await wait_for(second_answers, 60, "the same state on the fresh worker")
        except AssertionError:
            last = await _answers(http, second.url, event_id, request_ids)
            raise AssertionError(f"before: {before}\nafter: {last}") from None
