"""Submitting a plan: straight to Kafka (like external apps) or through the HTTP API.

The Kafka path builds one record batch per partition for everything that is due (keys =
event_id, values = :func:`eventpro.schemas.encode`d ``TicketRequested`` envelopes), which is
how a high-volume producer uses aiokafka. The HTTP path keeps ``concurrency`` requests in
flight. Both follow the plan's arrival offsets and note each request's first submission time
(epoch seconds) in ``sent_at`` for the latency figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from eventpro.client import TicketClient
from eventpro.loadgen.plan import LoadPlan, PlannedEvent, PlannedSend
from eventpro.loadgen.spec import LoadgenError
from eventpro.schemas import Envelope, TicketRequested, encode
from eventpro.topics import partition_for_key

__all__ = (
    "SOURCE",
    "SendStats",
    "create_events_http",
    "create_events_kafka",
    "kafka_partitions",
    "send_http",
    "send_kafka",
)

logger = logging.getLogger(__name__)

SOURCE = "eventpro-loadgen"
_CHUNK = 2_000
_MAX_PENDING_BATCHES = 32


@dataclass(slots=True)
class SendStats:
    """How the submissions went."""

    sent: int = 0
    accepted: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


async def kafka_partitions(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Partition count of each topic that exists (missing ones are left out, not created)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=SOURCE)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [topic for topic in topics if topic in existing]
        if not wanted:
            return {}
        described = await admin.describe_topics(wanted)
        return {str(d["topic"]): len(d["partitions"]) for d in described if not d["error_code"]}
    finally:
        await admin.close()


async def create_events_kafka(
    bootstrap: str, topic_prefix: str, events: Sequence[PlannedEvent]
) -> None:
    """Produce ``EventCreated`` for each event (a no-op for one that exists with the same spec)."""
    async with TicketClient(bootstrap, topic_prefix=topic_prefix, source=SOURCE) as client:
        await asyncio.gather(
            *(
                client.create_event(
                    e.name,
                    e.capacity,
                    e.price_cents,
                    max_per_user=e.max_per_user,
                    event_id=e.event_id,
                )
                for e in events
            )
        )


def _encode(plan: LoadPlan, send: PlannedSend) -> tuple[bytes, bytes]:
    request = plan.requests[send.request]
    data = TicketRequested(
        request_id=request.request_id,
        event_id=request.event_id,
        user_id=request.user_id,
        quantity=request.quantity,
    )
    return request.event_id.encode("utf-8"), encode(Envelope.new(data, source=SOURCE))


async def _next_due(sends: Sequence[PlannedSend], i: int, start: float) -> float:
    """Sleep until ``sends[i]`` is due (in short steps); returns the elapsed time."""
    while True:
        now = time.monotonic() - start
        wait = sends[i].offset - now
        if wait <= 0:
            return now
        await asyncio.sleep(min(wait, 0.05))


async def send_kafka(
    plan: LoadPlan,
    bootstrap: str,
    topic: str,
    partitions: int,
    sent_at: list[float],
    on_sent: Callable[[int], None] | None = None,
) -> SendStats:
    """Produce the plan's submissions to ``topic`` (``partitions`` partitions), batched."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        client_id=SOURCE,
    )
    await producer.start()
    stats = SendStats()
    partition_of = {
        e.event_id: partition_for_key(e.event_id.encode("utf-8"), partitions) for e in plan.events
    }
    pending: list[tuple[asyncio.Future[Any], int]] = []

    async def settle(keep: int) -> None:
        while len(pending) > keep:
            future, count = pending.pop(0)
            try:
                await future
                stats.accepted += count
            except Exception as exc:  # aiokafka has many error types; count and report them
                stats.failed += count
                stats.errors[type(exc).__name__] += count

    sends = plan.sends
    start = time.monotonic()
    try:
        i = 0
        while i < len(sends):
            now = await _next_due(sends, i, start)
            batches: dict[int, Any] = {}
            counts: Counter[int] = Counter()
            end = i
            while end < len(sends) and end - i < _CHUNK and sends[end].offset <= now:
                send = sends[end]
                key, value = _encode(plan, send)
                partition = partition_of[plan.requests[send.request].event_id]
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    batch.close()
                    future = await producer.send_batch(batch, topic, partition=partition)
                    pending.append((future, counts.pop(partition)))
                    batch = batches[partition] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                counts[partition] += 1
                if not send.duplicate:
                    sent_at[send.request] = time.time()
                end += 1
            for partition, batch in batches.items():
                batch.close()
                future = await producer.send_batch(batch, topic, partition=partition)
                pending.append((future, counts[partition]))
            stats.sent += end - i
            if on_sent is not None:
                on_sent(end - i)
            i = end
            await settle(_MAX_PENDING_BATCHES)
        await settle(0)
    finally:
        stats.seconds = time.monotonic() - start
        await producer.stop()
    return stats


async def create_events_http(
    session: aiohttp.ClientSession, base_url: str, events: Sequence[PlannedEvent]
) -> None:
    """``POST /api/v1/events`` for each event; an existing same-spec event is fine.

    :raises LoadgenError: the API refused an event (for example 409: same id, other spec).
    """
    for e in events:
        body = {
            "event_id": e.event_id,
            "name": e.name,
            "capacity": e.capacity,
            "price_cents": e.price_cents,
            "max_per_user": e.max_per_user,
        }
        async with session.post(f"{base_url}/api/v1/events", json=body) as response:
            if response.status not in (200, 201, 202):
                text = await response.text()
                raise LoadgenError(
                    f"POST {base_url}/api/v1/events for {e.event_id} answered "
                    f"{response.status}: {text[:300]}"
                )


async def send_http(
    plan: LoadPlan,
    session: aiohttp.ClientSession,
    base_url: str,
    concurrency: int,
    sent_at: list[float],
    on_sent: Callable[[int], None] | None = None,
    on_refused: Callable[[int], None] | None = None,
) -> SendStats:
    """``POST /api/v1/ticket-requests`` for each submission, ``concurrency`` at a time.

    ``on_refused(index)`` is told about a first submission that was not accepted.
    """
    stats = SendStats()
    queue: asyncio.Queue[PlannedSend | None] = asyncio.Queue(maxsize=concurrency * 2)
    url = f"{base_url}/api/v1/ticket-requests"

    async def post(send: PlannedSend) -> None:
        request = plan.requests[send.request]
        body = {
            "event_id": request.event_id,
            "user_id": request.user_id,
            "quantity": request.quantity,
            "request_id": request.request_id,
        }
        if not send.duplicate:
            sent_at[send.request] = time.time()
        error: str | None = None
        try:
            async with session.post(url, json=body) as response:
                await response.read()
                if response.status != 202:
                    error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        stats.sent += 1
        if error is None:
            stats.accepted += 1
        else:
            stats.failed += 1
            stats.errors[error] += 1
            if not send.duplicate and on_refused is not None:
                on_refused(send.request)
        if on_sent is not None:
            on_sent(1)

    async def worker() -> None:
        while (send := await queue.get()) is not None:
            await post(send)

    start = time.monotonic()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        sends = plan.sends
        for i in range(len(sends)):
            await _next_due(sends, i, start)
            await queue.put(sends[i])
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        stats.seconds = time.monotonic() - start
    return stats
