"""The ticketing core end to end: embedded broker over TCP, a real Faust worker subprocess.

An on-sale of 1,000 seats receives 3,000 distinct requests (500 through the HTTP API, the
rest produced straight to Kafka like an external app) plus 500 duplicates resent with new
envelope ids. It must end with exactly 1,000 seats held, one distinct outcome per request_id
on ``reservations``, and the HTTP API reporting the same numbers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from support.cluster import free_port
from support.waiting import wait_for

from eventpro.schemas import Envelope, TicketRequested, decode, encode

WORKER_MAIN = Path(__file__).with_name("worker_main.py")
CAPACITY = 1_000
DISTINCT = 3_000
VIA_HTTP = 500
DUPLICATES = 500


@dataclass
class Worker:
    """A worker subprocess and how to reach it."""

    proc: subprocess.Popen[bytes]
    url: str
    prefix: str
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture()
def worker(shared_broker: str, tmp_path: Path) -> Iterator[Worker]:
    """One EventPro worker on the shared broker, with its own app id, topic prefix and port."""
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    prefix = f"it-{suffix}-"
    env = {
        **os.environ,
        "EVENTPRO_BROKER_URL": f"kafka://{shared_broker}",
        "EVENTPRO_APP_ID": f"eventpro-it-{suffix}",
        "EVENTPRO_TOPIC_PREFIX": prefix,
        "EVENTPRO_PARTITIONS": "4",
        "EVENTPRO_DATA_DIR": str(tmp_path / "data"),
        "EVENTPRO_WEB_PORT": str(port),
        "EVENTPRO_HOLD_TTL_SECONDS": "600",
        "EVENTPRO_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER_MAIN)], env=env, stdout=log, stderr=log, cwd=tmp_path
        )
    handle = Worker(proc, f"http://127.0.0.1:{port}", prefix, log_path)
    try:
        yield handle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def _get_json(
    http: aiohttp.ClientSession, url: str, status: int = 200
) -> dict[str, Any] | None:
    try:
        async with http.get(url) as response:
            if response.status != status:
                return None
            body: dict[str, Any] = await response.json()
            return body
    except aiohttp.ClientError:
        return None


def _request(event_id: str, i: int) -> TicketRequested:
    return TicketRequested(
        event_id=event_id, request_id=f"req-{i:05d}", user_id=f"user-{i:05d}", quantity=1
    )


async def _post_requests(
    http: aiohttp.ClientSession, base: str, requests: list[TicketRequested]
) -> None:
    semaphore = asyncio.Semaphore(32)

    async def post(req: TicketRequested) -> None:
        async with (
            semaphore,
            http.post(f"{base}/api/v1/ticket-requests", json=req.model_dump()) as response,
        ):
            assert response.status == 202, await response.text()

    await asyncio.gather(*(post(req) for req in requests))


async def _produce(bootstrap: str, topic: str, requests: list[TicketRequested]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=req.event_id.encode(),
                value=encode(Envelope.new(req, source="integration-test")),
            )
            for req in requests
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@pytest.mark.slow
async def test_on_sale_never_oversells(
    worker: Worker, shared_broker: str, http: aiohttp.ClientSession
) -> None:
    ready = await wait_for(
        lambda: _get_json(http, f"{worker.url}/ready"), 60, "the worker to be ready"
    )
    assert ready["assigned_partitions"] > 0, worker.log_tail()

    async with http.post(
        f"{worker.url}/api/v1/events",
        json={"name": "Big Show", "capacity": CAPACITY, "price_cents": 4_500, "max_per_user": 4},
    ) as response:
        assert response.status == 201, await response.text()
        event_id = (await response.json())["event_id"]
    await wait_for(
        lambda: _get_json(http, f"{worker.url}/api/v1/events/{event_id}"), 30, "the event"
    )

    requests = [_request(event_id, i) for i in range(DISTINCT)]
    topic = f"{worker.prefix}ticket-requests"
    await asyncio.gather(
        _post_requests(http, worker.url, requests[:VIA_HTTP]),
        _produce(shared_broker, topic, requests[VIA_HTTP:]),
    )
    # Resubmissions: same request_id, new envelope ids, half from each end of the list.
    duplicates = requests[: DUPLICATES // 2] + requests[-DUPLICATES // 2 :]
    await _produce(shared_broker, topic, duplicates)

    outcomes: dict[str, set[tuple[str, str]]] = defaultdict(set)
    received = 0
    consumer = AIOKafkaConsumer(
        f"{worker.prefix}reservations",
        bootstrap_servers=shared_broker,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:

        async def drain() -> bool:
            nonlocal received
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    envelope = decode(record.value)
                    data = envelope.data
                    assert record.key == event_id.encode()
                    outcomes[data.request_id].add((envelope.event_type, envelope.event_id))
                    received += 1
            return received >= DISTINCT + DUPLICATES

        await wait_for(drain, 120, "an outcome for every request and duplicate")
    finally:
        await consumer.stop()

    assert set(outcomes) == {req.request_id for req in requests}
    multiple = {rid: seen for rid, seen in outcomes.items() if len(seen) != 1}
    assert not multiple, f"requests with more than one distinct outcome: {list(multiple)[:5]}"
    kinds = [next(iter(seen))[0] for seen in outcomes.values()]
    assert kinds.count("SeatsReserved") == CAPACITY
    assert kinds.count("RequestRejected") == DISTINCT - CAPACITY
    assert received == DISTINCT + DUPLICATES

    event = await _get_json(http, f"{worker.url}/api/v1/events/{event_id}")
    assert event is not None
    assert (event["held"] + event["sold"], event["available"]) == (CAPACITY, 0)

    for req in requests[:: DISTINCT // 60]:
        status = await _get_json(
            http, f"{worker.url}/api/v1/events/{event_id}/requests/{req.request_id}"
        )
        assert status is not None
        # A reserved request moves on to confirmed once the payments agent captured it.
        expected = (
            {"reserved", "confirmed"}
            if ("SeatsReserved" in {k for k, _ in outcomes[req.request_id]})
            else {"rejected"}
        )
        assert status["status"] in expected
        if expected == {"rejected"}:
            assert status["reason"] == "sold_out"
    assert worker.proc.poll() is None, worker.log_tail()
