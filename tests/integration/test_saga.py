"""The payment saga end to end on the embedded broker, with injected failures.

One worker subprocess runs with a 3 s hold TTL, retry delays of 0.3 s / 3.5 s / 0.3 s, a 0.5 s
gateway timeout and a seeded simulated gateway that declines, fails transiently and hangs at
random. Buyers' user ids force outcomes too (see :mod:`eventpro.payments.gateway`):

- ``decline-*``: declined -> seats released, request failed;
- ``flaky-*``: one transient error -> retry-1 -> confirmed;
- ``hang-*``: the gateway captures but never answers -> timeout -> retry -> the same capture
  (charged once) -> confirmed;
- ``flaky2-*``: two transient errors -> retry-2 waits past the hold's expiry -> late capture ->
  seats released at expiry and the capture refunded (compensation);
- ``transient-*``: the gateway never answers -> retry-1..3 -> dead letter; the hold expires.

Then every record of the saga is delivered again. The invariants of DESIGN.md must hold
throughout, and the redelivery must change nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from support.cluster import WorkerFactory, group_lag
from support.waiting import wait_for

from eventpro.dlq import DeadLetterFilter, list_dead_letters, replay_dead_letters
from eventpro.processes import WorkerProcess
from eventpro.schemas import (
    Envelope,
    NotificationSent,
    OrderConfirmed,
    PaymentCaptured,
    RefundIssued,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
    TicketRequested,
    decode,
    encode,
)
from eventpro.topics import partition_for_key

PARTITIONS = 4
TERMINAL = {"confirmed", "rejected", "failed"}
PROFILES = ("u", "decline", "flaky", "hang", "u", "flaky2", "transient", "u")


@dataclass
class SagaWorker:
    factory: WorkerFactory
    worker: WorkerProcess
    notifications_log: Path

    def topic(self, logical: str) -> str:
        return self.factory.topic(logical)

    @property
    def url(self) -> str:
        return self.worker.url

    @property
    def prefix(self) -> str:
        return self.factory.prefix

    @property
    def log_text(self) -> str:
        return self.worker.log_path.read_text(errors="replace") if self.worker.log_path else ""

    def assert_alive(self) -> None:
        assert self.worker.is_running(), self.worker.log_tail()


@pytest.fixture(scope="module")
def saga_worker(
    shared_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SagaWorker]:
    work_dir = tmp_path_factory.mktemp("saga-worker")
    log = work_dir / "notifications.jsonl"
    env = {
        "EVENTPRO_HOLD_TTL_SECONDS": "3",
        "EVENTPRO_EXPIRY_TICK_SECONDS": "0.2",
        "EVENTPRO_RETRY_DELAYS_MS": "[300,3500,300]",
        "EVENTPRO_PAYMENT_TIMEOUT_SECONDS": "0.5",
        "EVENTPRO_GATEWAY_LATENCY_MS_MIN": "1",
        "EVENTPRO_GATEWAY_LATENCY_MS_MAX": "30",
        "EVENTPRO_GATEWAY_DECLINE_RATE": "0.15",
        "EVENTPRO_GATEWAY_TRANSIENT_ERROR_RATE": "0.15",
        "EVENTPRO_GATEWAY_TIMEOUT_RATE": "0.1",
        "EVENTPRO_GATEWAY_SEED": "7",
        "EVENTPRO_NOTIFICATIONS_LOG": str(log),
        "EVENTPRO_LOG_LEVEL": "INFO",
    }
    factory = WorkerFactory(shared_broker, work_dir, partitions=PARTITIONS)
    try:
        yield SagaWorker(factory, factory(**env), log)
    finally:
        factory.stop_all()


@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def _get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with http.get(url) as response:
            if response.status != 200:
                return None
            body: dict[str, Any] = await response.json()
            return body
    except aiohttp.ClientError:
        return None


async def _ready_event(
    http: aiohttp.ClientSession, worker: SagaWorker, capacity: int, max_per_user: int = 4
) -> str:
    await wait_for(lambda: _get_json(http, f"{worker.url}/ready"), 60, "the worker to be ready")
    event_id = f"ev-{uuid.uuid4().hex[:10]}"
    body = {
        "event_id": event_id,
        "name": "Saga Show",
        "capacity": capacity,
        "price_cents": 2_500,
        "max_per_user": max_per_user,
    }
    async with http.post(f"{worker.url}/api/v1/events", json=body) as response:
        assert response.status in (201, 202), await response.text()
    await wait_for(
        lambda: _get_json(http, f"{worker.url}/api/v1/events/{event_id}"), 30, "the event"
    )
    return event_id


async def _produce(
    bootstrap: str, records: list[tuple[str, bytes | None, bytes, int | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=value, partition=partition)
            for topic, key, value, partition in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass
class Collector:
    """Reads the saga's topics from the beginning and keeps every decoded envelope."""

    bootstrap: str
    worker: SagaWorker
    logical: tuple[str, ...] = ("reservations", "payments", "orders", "notifications")
    seen: dict[str, list[tuple[bytes | None, bytes, Envelope]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self.consumer.start()
        tps = [
            TopicPartition(self.worker.topic(name), p)
            for name in self.logical
            for p in range(PARTITIONS)
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def poll(self) -> None:
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=100)
        for tp, records in batches.items():
            logical = tp.topic.removeprefix(self.worker.prefix)
            for record in records:
                self.seen[logical].append((record.key, record.value, decode(record.value)))

    async def drain(self) -> None:
        """Read everything the topics hold right now."""
        assert self.consumer is not None
        tps = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(tps)
        while True:
            positions = [await self.consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                return
            await self.poll()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    def of(self, cls: type) -> list[Envelope]:
        return [
            env for recs in self.seen.values() for _, _, env in recs if isinstance(env.data, cls)
        ]


@pytest.fixture()
async def collector(shared_broker: str, saga_worker: SagaWorker) -> AsyncIterator[Collector]:
    reader = Collector(shared_broker, saga_worker)
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()


async def _statuses(
    http: aiohttp.ClientSession, worker: SagaWorker, event_id: str, request_ids: list[str]
) -> dict[str, dict[str, Any]]:
    bodies = await asyncio.gather(
        *(
            _get_json(http, f"{worker.url}/api/v1/events/{event_id}/requests/{rid}")
            for rid in request_ids
        )
    )
    return {rid: body for rid, body in zip(request_ids, bodies, strict=True) if body is not None}


async def _consumer_lag(bootstrap: str, worker: SagaWorker, group: str) -> int:
    """Records of the worker's input topics not yet committed by its consumer group."""
    inputs = (
        "ticket-requests",
        "reservations",
        "payments",
        "orders",
        "retry-1",
        "retry-2",
        "retry-3",
    )
    return await group_lag(bootstrap, group, [worker.topic(name) for name in inputs], PARTITIONS)


def _notifications(log: Path, event_id: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines() if line]
    return [n for n in lines if n["event_id"] == event_id]


@dataclass
class Snapshot:
    statuses: dict[str, dict[str, Any]]
    event: dict[str, Any]
    sent: list[dict[str, Any]]


def _check_invariants(
    collector: Collector, snap: Snapshot, event_id: str, request_ids: list[str]
) -> None:
    """DESIGN.md's invariants 1-4 for one event, from the API, the topics and the sink."""
    mine = lambda cls: [e for e in collector.of(cls) if e.data.event_id == event_id]  # noqa: E731
    event = snap.event
    # 1. sold + held <= capacity, and nothing is held any more.
    assert event["sold"] + event["held"] <= event["capacity"]
    assert event["held"] == 0
    # 2. Exactly one terminal status per request, and exactly one terminal outcome event.
    assert {rid: s["status"] in TERMINAL for rid, s in snap.statuses.items()} == {
        rid: True for rid in request_ids
    }
    outcomes: dict[str, set[str]] = defaultdict(set)
    for cls in (OrderConfirmed, RequestRejected, SeatsReleased):
        for env in mine(cls):
            outcomes[env.data.request_id].add(env.event_id)
    assert {rid: len(ids) for rid, ids in outcomes.items()} == {rid: 1 for rid in request_ids}
    # 3. Seats sold == tickets in confirmed orders; every capture confirmed xor refunded.
    orders = {e.data.reservation_id: e.data for e in mine(OrderConfirmed)}
    assert event["sold"] == sum(len(o.ticket_ids) for o in orders.values())
    confirmed = {rid for rid, s in snap.statuses.items() if s["status"] == "confirmed"}
    assert confirmed == {o.request_id for o in orders.values()}
    captured = {e.data.reservation_id for e in mine(PaymentCaptured)}
    refunded = {e.data.reservation_id for e in mine(RefundIssued)}
    assert captured == set(orders) | refunded
    assert not set(orders) & refunded
    # 4. At most one notification per outcome (and here exactly one: every request ended).
    per_request = Counter(n["request_id"] for n in snap.sent)
    assert per_request == Counter(request_ids)
    on_topic = defaultdict(set)
    for env in mine(NotificationSent):
        on_topic[env.data.request_id].add(env.event_id)
    assert {rid: len(ids) for rid, ids in on_topic.items()} == {rid: 1 for rid in request_ids}


async def _snapshot(
    http: aiohttp.ClientSession, saga: SagaWorker, event_id: str, request_ids: list[str]
) -> Snapshot:
    worker = saga
    event = await _get_json(http, f"{worker.url}/api/v1/events/{event_id}")
    assert event is not None
    assert event["sold"] + event["held"] <= event["capacity"], event
    return Snapshot(
        await _statuses(http, worker, event_id, request_ids),
        event,
        _notifications(saga.notifications_log, event_id),
    )


@pytest.mark.slow
async def test_saga_with_injected_failures_keeps_every_invariant(
    saga_worker: SagaWorker, shared_broker: str, http: aiohttp.ClientSession, collector: Collector
) -> None:
    worker = saga_worker
    capacity = 40
    event_id = await _ready_event(http, worker, capacity)
    key = event_id.encode()
    requests = [
        TicketRequested(
            event_id=event_id,
            request_id=f"req-{i:03d}",
            user_id=f"{PROFILES[i % len(PROFILES)]}-{i:03d}",
            quantity=1,
        )
        for i in range(capacity)
    ]
    requests += [
        TicketRequested(
            event_id=event_id, request_id=f"tail-{i}", user_id=f"u-tail-{i}", quantity=1
        )
        for i in range(10)
    ]
    requests.append(
        TicketRequested(event_id=event_id, request_id="bad-qty", user_id="u-bad", quantity=0)
    )
    request_ids = [r.request_id for r in requests]
    first = [Envelope.new(r, source="saga-test") for r in requests]
    topic = worker.topic("ticket-requests")
    await _produce(shared_broker, [(topic, key, encode(env), None) for env in first])

    # flaky2 buyers' captures arrive after their holds expired: wait for their refunds too.
    late_captures = {r.request_id for r in requests[:capacity] if r.user_id.startswith("flaky2")}

    async def settled() -> Snapshot | None:
        # A retried charge may still capture after its hold expired (then it is refunded):
        # settled means nothing is left in any input or retry topic, and all of it was read.
        if await _consumer_lag(shared_broker, worker, worker.factory.app_id):
            return None
        await collector.drain()
        snap = await _snapshot(http, saga_worker, event_id, request_ids)
        if len(snap.statuses) < len(request_ids):
            return None
        if any(s["status"] not in TERMINAL for s in snap.statuses.values()):
            return None
        mine_captured = {
            e.data.reservation_id
            for e in collector.of(PaymentCaptured)
            if e.data.event_id == event_id
        }
        resolved = {
            e.data.reservation_id
            for cls in (OrderConfirmed, RefundIssued)
            for e in collector.of(cls)
            if e.data.event_id == event_id
        }
        notified = {
            e.data.request_id for e in collector.of(NotificationSent) if e.data.event_id == event_id
        }
        if snap.event["held"] or mine_captured - resolved or len(notified) < len(request_ids):
            return None
        if len(snap.sent) < len(request_ids):
            return None
        refunded = {
            e.data.request_id for e in collector.of(RefundIssued) if e.data.event_id == event_id
        }
        if not late_captures <= refunded:
            return None
        return snap

    before = await wait_for(settled, 60, "every request to finish its saga")
    _check_invariants(collector, before, event_id, request_ids)

    by_profile: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for req in requests[:capacity]:
        status = before.statuses[req.request_id]
        by_profile[req.user_id.split("-")[0]].add((status["status"], status["reason"]))
    assert by_profile["decline"] == {("failed", "payment_declined")}
    assert by_profile["flaky"] == {("confirmed", None)}
    assert by_profile["hang"] == {("confirmed", None)}
    assert by_profile["flaky2"] == {("failed", "expired")}
    assert by_profile["transient"] == {("failed", "expired")}
    assert before.statuses["bad-qty"]["reason"] == "invalid"
    refunded = {
        e.data.request_id for e in collector.of(RefundIssued) if e.data.event_id == event_id
    }
    assert late_captures <= refunded

    # Gateway outage: the transient buyers' charges ended in the DLQ after 4 attempts.
    correlation = {env.data.request_id: env.correlation_id for env in first}
    transient = [r for r in requests[:capacity] if r.user_id.startswith("transient")]
    wanted = {correlation[r.request_id] for r in transient}

    async def exhausted() -> dict[str | None, Any] | None:
        letters = await list_dead_letters(
            shared_broker,
            DeadLetterFilter(reason="retries_exhausted", source_topic=worker.topic("reservations")),
            topic=worker.topic("dlq"),
        )
        found = {e.letter.correlation_id: e.letter for e in letters}
        return found if wanted <= set(found) else None

    letter_by_corr = await wait_for(exhausted, 20, "the transient charges in the DLQ")
    for req in transient:
        letter = letter_by_corr[correlation[req.request_id]]
        assert (letter.attempts, letter.agent) == (4, "eventpro.agents.payments")
        original = decode(letter.original())
        assert isinstance(original.data, SeatsReserved)
        assert original.data.request_id == req.request_id
        assert f"correlation_id={correlation[req.request_id]}" in worker.log_text

    # The saga carries correlation and causation ids through every step.
    hang = next(r for r in requests if r.user_id.startswith("hang"))
    chain = sorted(
        (
            env
            for recs in collector.seen.values()
            for _, _, env in recs
            if getattr(env.data, "request_id", None) == hang.request_id
            and env.data.event_id == event_id
        ),
        key=lambda env: env.occurred_at,
    )
    assert [env.event_type for env in chain] == [
        "SeatsReserved",
        "PaymentCaptured",
        "OrderConfirmed",
        "NotificationSent",
    ]
    assert {env.correlation_id for env in chain} == {correlation[hang.request_id]}
    assert [env.causation_id for env in chain[1:]] == [env.event_id for env in chain[:-1]]

    # Duplicate deliveries: every request resubmitted, every saga record delivered again.
    again: list[tuple[str, bytes | None, bytes, int | None]] = [
        (topic, key, encode(Envelope.new(r, source="saga-test")), None) for r in requests
    ]
    for logical in ("reservations", "payments", "orders"):
        for rkey, value, env in list(collector.seen[logical]):
            if getattr(env.data, "event_id", None) == event_id:
                again.append((worker.topic(logical), rkey, value, None))
    await _produce(shared_broker, again)
    group = worker.factory.app_id

    async def caught_up() -> bool:
        return await _consumer_lag(shared_broker, worker, group) == 0

    await wait_for(caught_up, 45, "the worker to process every redelivered record")
    await collector.drain()
    after = await _snapshot(http, saga_worker, event_id, request_ids)
    _check_invariants(collector, after, event_id, request_ids)
    assert after.event == before.event
    assert after.statuses == before.statuses
    assert after.sent == before.sent
    worker.assert_alive()


@pytest.mark.slow
async def test_poison_records_go_to_the_dlq_and_replay_processes_them(
    saga_worker: SagaWorker, shared_broker: str, http: aiohttp.ClientSession
) -> None:
    worker = saga_worker
    event_id = await _ready_event(http, worker, capacity=10)
    key = event_id.encode()
    marker = uuid.uuid4().hex.encode()
    garbage = b"{not json " + marker
    wrong_schema = encode(
        Envelope.new(
            SeatsReserved(
                reservation_id="r",
                request_id="poison",
                event_id=event_id,
                user_id="u",
                quantity=1,
                amount_cents=1,
                expires_at_ms=1,
            ),
            source="saga-test",
        )
    ).replace(b'"amount_cents":1', b'"amount_cents":"lots"')
    right = partition_for_key(key, PARTITIONS)
    misrouted = Envelope.new(
        TicketRequested(event_id=event_id, request_id="misrouted", user_id="u-mis", quantity=1),
        source="librdkafka-app",
    )
    following = [
        Envelope.new(
            TicketRequested(
                event_id=event_id, request_id=f"after-{i}", user_id=f"u-a{i}", quantity=1
            ),
            source="saga-test",
        )
        for i in range(3)
    ]
    await _produce(
        shared_broker,
        [
            (worker.topic("ticket-requests"), key, garbage, None),
            (worker.topic("reservations"), key, wrong_schema, None),
            (worker.topic("ticket-requests"), key, encode(misrouted), (right + 1) % PARTITIONS),
            *[(worker.topic("ticket-requests"), key, encode(env), None) for env in following],
        ],
    )

    async def all_finished(ids: list[str]) -> bool:
        # The gateway declines and fails at random here: any terminal status means processed.
        statuses = await _statuses(http, worker, event_id, ids)
        return len(statuses) == len(ids) and all(s["status"] in TERMINAL for s in statuses.values())

    # The records after the poison ones are processed.
    after_ids = [f"after-{i}" for i in range(3)]
    await wait_for(lambda: all_finished(after_ids), 30, "the records after the poison ones")

    dlq = worker.topic("dlq")

    async def dead_letters() -> dict[str, Any] | None:
        entries = await list_dead_letters(shared_broker, topic=dlq)
        found: dict[str, Any] = {}
        for entry in entries:
            letter = entry.letter
            if letter.original() == garbage:
                found["garbage"] = letter
            elif letter.original() == wrong_schema:
                found["wrong_schema"] = letter
            elif letter.correlation_id == misrouted.correlation_id:
                found["misrouted"] = letter
        return found if len(found) == 3 else None

    found = await wait_for(dead_letters, 30, "three dead letters")
    assert (found["garbage"].reason, found["garbage"].topic) == (
        "invalid_json",
        worker.topic("ticket-requests"),
    )
    assert found["wrong_schema"].reason == "validation_error"
    assert "amount_cents" in found["wrong_schema"].error
    assert found["wrong_schema"].agent == "eventpro.agents.payments"
    misrouted_letter = found["misrouted"]
    assert misrouted_letter.reason == "wrong_partition"
    assert misrouted_letter.partition == (right + 1) % PARTITIONS
    assert misrouted_letter.original_key() == key

    # The fix: replay through Kafka's default partitioner, which puts it where it belongs.
    report = await replay_dead_letters(
        shared_broker,
        DeadLetterFilter(correlation_id=misrouted.correlation_id),
        topic=dlq,
        progress=False,
    )
    assert report.replayed == 1
    assert report.by_topic == {worker.topic("ticket-requests"): 1}
    await wait_for(lambda: all_finished(["misrouted"]), 30, "the replayed request")
    expected = Counter([*after_ids, "misrouted"])

    async def notified() -> Counter[str] | None:
        # The notification follows the outcome record, a moment after the status is final.
        sent = _notifications(saga_worker.notifications_log, event_id)
        seen = Counter(n["request_id"] for n in sent)
        return seen if seen == expected else None

    await wait_for(notified, 30, "one notification per request, the replayed one included")
    worker.assert_alive()
