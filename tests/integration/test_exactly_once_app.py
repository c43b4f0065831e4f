"""EventPro itself under ``processing_guarantee=exactly_once``, its worker SIGKILLed mid-stream.

A read_committed consumer of the output topics must see every request's outcome exactly once
(not even a same-id duplicate) and nothing of the transactions the kill aborted; the
read_uncommitted view of the same topics is what the aborted transactions left behind.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from support.cluster import WorkerFactory

from eventpro.broker.process import BrokerProcess
from eventpro.client import TicketClient
from eventpro.topics import INVENTORY_TICKS, ORDERS, RESERVATIONS, TICKET_REQUESTS

PARTITIONS = 4
EVENTS = 4
CAPACITY = 120
REQUESTS = 800
EOS_ENV = {
    "EVENTPRO_PROCESSING_GUARANTEE": "exactly_once",
    "EVENTPRO_GATEWAY_LATENCY_MS_MIN": "1",
    "EVENTPRO_GATEWAY_LATENCY_MS_MAX": "2",
    "EVENTPRO_GATEWAY_DECLINE_RATE": "0",
    "EVENTPRO_GATEWAY_TRANSIENT_ERROR_RATE": "0",
    "EVENTPRO_GATEWAY_TIMEOUT_RATE": "0",
}


async def _read_all(
    bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS
) -> list[dict[str, object]]:
    """Every record of ``topic`` visible at the given isolation level, as decoded envelopes."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out.extend(orjson.loads(record.value) for record in records)
        return out
    finally:
        await consumer.stop()


def _decided(envelopes: list[dict[str, object]]) -> Counter[str]:
    """How many decision records (SeatsReserved / RequestRejected) each request_id has."""
    return Counter(
        str(env["data"]["request_id"])  # type: ignore[index]
        for env in envelopes
        if env["event_type"] in ("SeatsReserved", "RequestRejected")
    )


async def _wait_records(bootstrap: str, topic: str, at_least: int) -> None:
    """Wait until ``topic`` holds ``at_least`` records (transaction markers included)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + 150
        while sum((await consumer.end_offsets(tps)).values()) < at_least:
            assert time.monotonic() < deadline, f"{topic} never held {at_least} records"
            await asyncio.sleep(0.02)
    finally:
        await consumer.stop()


async def _wait_decided(bootstrap: str, topic: str, isolation: str, at_least: int) -> int:
    deadline = time.monotonic() + 150
    while True:
        count = len(_decided(await _read_all(bootstrap, topic, isolation)))
        if count >= at_least:
            return count
        assert time.monotonic() < deadline, f"only {count} of {at_least} requests decided"
        await asyncio.sleep(0.5)


async def test_read_committed_sees_each_outcome_once_after_a_sigkill(
    broker_process: BrokerProcess, tmp_path: Path
) -> None:
    bootstrap = broker_process.bootstrap
    factory = WorkerFactory(bootstrap, tmp_path, partitions=PARTITIONS)
    worker = factory(**EOS_ENV)
    reservations = factory.topic(RESERVATIONS)
    try:
        async with TicketClient(bootstrap, topic_prefix=factory.prefix) as client:
            events = [
                await client.create_event(f"eos {n}", CAPACITY, 1_000, event_id=f"eos-e{n}")
                for n in range(EVENTS)
            ]

            async def request_all() -> None:
                for n in range(REQUESTS):
                    await client.request_tickets(
                        events[n % EVENTS], f"user-{n}", 1 + n % 2, request_id=f"eos-r{n:04d}"
                    )

            # The kill must come mid-load: watch the output while the requests still go in (a
            # worker as fast as the producer decided all of them before a check after it).
            requesting = asyncio.ensure_future(request_all())
            try:
                await _wait_records(bootstrap, reservations, 150)
                worker.kill()
            finally:
                await requesting
        decided_before_kill = len(
            _decided(await _read_all(bootstrap, reservations, "read_uncommitted"))
        )
        assert 0 < decided_before_kill < REQUESTS, "the kill did not come mid-load"
        worker.start(timeout=90)
        await _wait_decided(bootstrap, reservations, "read_committed", REQUESTS)

        committed = await _read_all(bootstrap, reservations, "read_committed")
        uncommitted = await _read_all(bootstrap, reservations, "read_uncommitted")
        decided = _decided(committed)
        assert set(decided) == {f"eos-r{n:04d}" for n in range(REQUESTS)}
        assert max(decided.values()) == 1, [rid for rid, c in decided.items() if c > 1][:5]
        ids = Counter(str(env["event_id"]) for env in committed)
        assert max(ids.values()) == 1, "a record of the output topic was committed twice"
        assert {str(env["event_id"]) for env in committed} <= {
            str(env["event_id"]) for env in uncommitted
        }
        sold = sum(
            int(env["data"]["quantity"])  # type: ignore[index]
            for env in committed
            if env["event_type"] == "SeatsReserved"
        )
        assert sold <= EVENTS * CAPACITY

        orders = await _read_all(bootstrap, factory.topic(ORDERS), "read_committed")
        order_ids = Counter(
            str(env["data"]["reservation_id"])  # type: ignore[index]
            for env in orders
            if env["event_type"] == "OrderConfirmed"
        )
        assert not order_ids or max(order_ids.values()) == 1
    finally:
        for started in factory.workers:
            started.kill()  # faust 0.15.3 cannot stop an exactly_once app on SIGTERM


async def _committed_ends(bootstrap: str, topic: str, partitions: int) -> list[int]:
    """Each partition's last stable offset: where a read_committed reader's view ends."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]
    finally:
        await consumer.stop()


async def _group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The offsets ``group`` committed on each partition of ``topic`` (0: nothing yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    found = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    return [found.get(p, 0) for p in range(partitions)]


async def test_requests_behind_an_aborted_transaction_are_decided_and_committed(
    shared_broker: str, tmp_path: Path
) -> None:
    """Two of Faust's gaps in exactly-once commits, each of which fenced the worker after the
    broker's 60 s transaction timeout with not one outcome visible:

    - the head of the request partition is an aborted transaction's records, which a
      read_committed consumer never sees (Faust's gap tracking misses a gap at the head);
    - the other partition gets only hold-expiry ticks, sent into its transaction by a timer,
      so no offset ever came to commit that transaction.
    """
    partitions = 2
    factory = WorkerFactory(shared_broker, tmp_path, partitions=partitions)
    try:
        factory(**EOS_ENV)  # declares the topics with their partitions
        event = "abort-e"
        txn = AIOKafkaProducer(
            bootstrap_servers=shared_broker, transactional_id=f"{factory.prefix}external-app"
        )
        async with TicketClient(shared_broker, topic_prefix=factory.prefix, producer=txn) as app:
            await txn.begin_transaction()
            for n in range(5):
                await app.request_tickets(event, f"gone-{n}", 1, request_id=f"aborted-r{n}")
            await txn.abort_transaction()
        async with TicketClient(shared_broker, topic_prefix=factory.prefix) as client:
            await client.create_event("behind an abort", 100, 1_000, event_id=event)
            for n in range(10):
                await client.request_tickets(event, f"user-{n}", 1, request_id=f"kept-r{n}")
        reservations, ticks = factory.topic(RESERVATIONS), factory.topic(INVENTORY_TICKS)
        requests = factory.topic(TICKET_REQUESTS)
        request_ends = await _committed_ends(shared_broker, requests, partitions)
        deadline = time.monotonic() + 45  # inside the broker's 60 s transaction timeout
        decided: Counter[str] = Counter()
        tick_ends = [0] * partitions
        consumed: list[int] = [0] * partitions
        while len(decided) < 10 or min(tick_ends) == 0 or consumed != request_ends:
            assert time.monotonic() < deadline, (
                f"decided and committed: {sorted(decided)}; ticks committed up to {tick_ends}; "
                f"requests consumed up to {consumed} of {request_ends}"
            )
            await asyncio.sleep(0.5)
            committed = await _read_all(shared_broker, reservations, "read_committed", partitions)
            decided = _decided(committed)
            tick_ends = await _committed_ends(shared_broker, ticks, partitions)
            consumed = await _group_offsets(shared_broker, factory.app_id, requests, partitions)
        assert decided == Counter({f"kept-r{n}": 1 for n in range(10)})
    finally:
        for started in factory.workers:
            started.kill()
