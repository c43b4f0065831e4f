"""A worker whose data dir holds the notifications-sent store of an earlier release (a RocksDB
store without TTL) deletes it at start and rebuilds the table, now a TTL store, from the
changelog: a redelivered outcome is still not notified twice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rocksdict import AccessType, Options, Rdict
from support.cluster import WorkerFactory
from support.waiting import wait_for

from eventpro.domain import request_key
from eventpro.schemas import OrderConfirmed, decode

OFFSET_KEY = b"__faust\0offset__"
"""Where Faust's RocksDB store keeps a partition's persisted changelog offset."""


def _notified(log: Path, event_id: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    sent = [orjson.loads(line) for line in log.read_bytes().splitlines() if line]
    return [n for n in sent if n["event_id"] == event_id]


def _stored(path: Path, *, ttl: bool) -> dict[bytes, bytes]:
    """A stopped worker's store, read as a TTL store or as a plain one."""
    access = AccessType.with_ttl(3600) if ttl else AccessType.read_only()
    db = Rdict(str(path), options=Options(raw_mode=True), access_type=access)
    try:
        return dict(db.items())
    finally:
        db.close()


async def _request(http: aiohttp.ClientSession, base: str, event_id: str, request_id: str) -> None:
    body = {"event_id": event_id, "user_id": request_id, "quantity": 1, "request_id": request_id}
    async with http.post(f"{base}/api/v1/ticket-requests", json=body) as response:
        assert response.status == 202, await response.text()


async def _order_confirmed(bootstrap: str, topic: str, request_id: str) -> tuple[int, bytes, bytes]:
    """(partition, key, value) of the ``OrderConfirmed`` record of ``request_id``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:

        async def find() -> tuple[int, bytes, bytes] | None:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = decode(record.value)
                    payload = envelope.data
                    if isinstance(payload, OrderConfirmed) and payload.request_id == request_id:
                        return record.partition, record.key, record.value
            return None

        return await wait_for(find, 30, f"the OrderConfirmed of {request_id}")
    finally:
        await consumer.stop()


async def test_an_upgraded_worker_rebuilds_notifications_into_a_ttl_store(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "notifications.jsonl"
    worker = worker_factory(EVENTPRO_NOTIFICATIONS_LOG=str(log))
    event_id = f"upgrade-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        body = {"event_id": event_id, "name": event_id, "capacity": 10, "price_cents": 100}
        async with http.post(f"{worker.url}/api/v1/events", json=body) as response:
            assert response.status == 201, await response.text()
        await _request(http, worker.url, event_id, "first")

        async def first_notified() -> list[dict[str, Any]] | None:
            return _notified(log, event_id) or None

        [first] = await wait_for(first_notified, 60, "the first request's notification")
        worker.stop()

        # The store is a TTL store: read plainly, each value carries a 4-byte write time.
        stores = sorted(worker.data_dir.rglob("notifications-sent-ttl-*.db"))
        assert stores, sorted(p.name for p in worker.data_dir.rglob("*.db"))
        key = request_key(event_id, "first").encode()
        [holder] = [path for path in stores if key in _stored(path, ttl=True)]
        assert _stored(holder, ttl=True)[key] == first["notification_id"].encode()
        assert len(_stored(holder, ttl=False)[key]) == len(first["notification_id"]) + 4

        # What the earlier release left: plain stores named after the table, and no TTL stores.
        tabledir = holder.parent
        for path in stores:
            old = tabledir / path.name.replace("notifications-sent-ttl-", "notifications-sent-")
            db = Rdict(str(old), options=Options(raw_mode=True))
            for stored_key, stored_value in _stored(path, ttl=True).items():
                db[stored_key] = stored_value
            db.close()
            Rdict.destroy(str(path))
        (tabledir / "notifications-sent-backups").mkdir(exist_ok=True)

        worker.restart()
        left = {p.name for p in tabledir.iterdir() if p.name.startswith("notifications-sent-")}
        assert left and all(name.startswith("notifications-sent-ttl-") for name in left), left

        # The first request's outcome arrives again, then a new request in the same partition:
        # once the new one is notified, the duplicate has been handled.
        partition, record_key, value = await _order_confirmed(
            worker_factory.broker, worker_factory.topic("orders"), "first"
        )
        producer = AIOKafkaProducer(bootstrap_servers=worker_factory.broker)
        await producer.start()
        try:
            await producer.send_and_wait(
                worker_factory.topic("orders"), value, key=record_key, partition=partition
            )
        finally:
            await producer.stop()
        await _request(http, worker.url, event_id, "second")

        async def second_notified() -> list[dict[str, Any]] | None:
            sent = _notified(log, event_id)
            return sent if any(n["request_id"] == "second" for n in sent) else None

        sent = await wait_for(second_notified, 60, "the second request's notification")
        assert sorted(n["request_id"] for n in sent) == ["first", "second"]
