"""Outcomes of a run's requests, read from ``reservations`` (and ``orders``), and the invariants.

:class:`OutcomeTracker` is pure bookkeeping (no Kafka) over the outcome envelopes it is shown;
:class:`OutcomeReader` feeds it from the topics. Outcome envelopes carry deterministic ids, so
a decision re-emitted for a resubmission has the same id and counts once; two *different*
decisions for one request are a violation, as is any event with more seats reserved (minus
released) or confirmed than its capacity.

Records are parsed with ``orjson`` only (no pydantic) so reading keeps up with the pipeline
without taking its CPU.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from eventpro.loadgen.plan import LoadPlan

__all__ = (
    "DECISION_TYPES",
    "FINAL_TYPES",
    "LatencyStats",
    "OutcomeReader",
    "OutcomeSummary",
    "OutcomeTracker",
    "percentile",
)

logger = logging.getLogger(__name__)

DECISION_TYPES = frozenset({"SeatsReserved", "RequestRejected"})
FINAL_TYPES = frozenset({"OrderConfirmed", "SeatsReleased"})
_MAX_VIOLATIONS = 20


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted values, nearest-rank; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Milliseconds from first submission to an outcome."""

    count: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Iterable[float]) -> LatencyStats:
        values = sorted(s * 1000.0 for s in seconds)
        mean = sum(values) / len(values) if values else math.nan
        return cls(
            count=len(values),
            p50_ms=percentile(values, 50),
            p90_ms=percentile(values, 90),
            p95_ms=percentile(values, 95),
            p99_ms=percentile(values, 99),
            max_ms=values[-1] if values else math.nan,
            mean_ms=mean,
        )


@dataclass(frozen=True, slots=True)
class EventTally:
    event_id: str
    capacity: int
    requests: int
    reserved_seats: int
    released_seats: int
    confirmed_seats: int
    rejected: int

    @property
    def held_or_sold(self) -> int:
        return self.reserved_seats - self.released_seats


@dataclass(frozen=True, slots=True)
class OutcomeSummary:
    """What the run's requests got, and whether the invariants held."""

    distinct_requests: int
    expected: int
    decided: int
    finalized: int
    reserved: int
    decisions: dict[str, int]
    finals: dict[str, int]
    events: tuple[EventTally, ...]
    decision_latency: LatencyStats
    final_latency: LatencyStats
    first_decided_at: float | None
    last_decided_at: float | None
    last_final_at: float | None
    violations: tuple[str, ...]
    undecided_sample: tuple[str, ...]

    @property
    def oversold_events(self) -> tuple[str, ...]:
        return tuple(
            e.event_id
            for e in self.events
            if e.held_or_sold > e.capacity or e.confirmed_seats > e.capacity
        )

    @property
    def no_oversell(self) -> bool:
        return not self.oversold_events

    @property
    def one_outcome_per_request(self) -> bool:
        """No request got two different decisions or two different final outcomes."""
        return not any(v.startswith("request") for v in self.violations)

    @property
    def every_request_decided(self) -> bool:
        """Every accepted request has its decision (false while some are still missing)."""
        return self.decided >= self.expected

    @property
    def ok(self) -> bool:
        return self.no_oversell and self.one_outcome_per_request and self.every_request_decided

    def decision_seconds(self) -> float:
        """First to last decision (occurred_at of the outcomes), in seconds."""
        if self.first_decided_at is None or self.last_decided_at is None:
            return math.nan
        return self.last_decided_at - self.first_decided_at


class OutcomeTracker:
    """Matches outcome envelopes to the plan's requests.

    :param sent_at: wall-clock time (epoch seconds) of each request's first submission,
        indexed like ``plan.requests``; NaN for not sent (no latency counted).
    """

    def __init__(self, plan: LoadPlan, sent_at: list[float] | None = None) -> None:
        self.plan = plan
        self.sent_at = sent_at if sent_at is not None else [math.nan] * len(plan.requests)
        self._index = {r.request_id: r.index for r in plan.requests}
        self._capacity = plan.capacity_of()
        n = len(plan.requests)
        self._decision_id: list[str | None] = [None] * n
        self._decision_kind: list[str | None] = [None] * n
        self._final_id: list[str | None] = [None] * n
        self._final_kind: list[str | None] = [None] * n
        self._decision_latency: list[float] = []
        self._final_latency: list[float] = []
        self.decisions: Counter[str] = Counter()
        self.finals: Counter[str] = Counter()
        self.decided = 0
        self.finalized = 0
        self.reserved = 0
        self.records_seen = 0
        self.first_decided_at: float | None = None
        self.last_decided_at: float | None = None
        self.last_final_at: float | None = None
        self._reserved_seats: Counter[str] = Counter()
        self._released_seats: Counter[str] = Counter()
        self._confirmed_seats: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self.violations: list[str] = []
        self.refused = 0
        self._refused: set[int] = set()

    @property
    def expected(self) -> int:
        """Requests that must get an outcome: all but those whose every submission failed."""
        return len(self.plan.requests) - self.refused

    def mark_refused(self, index: int) -> None:
        """The first submission of request ``index`` was refused (it may get no outcome)."""
        if index not in self._refused and self._decision_id[index] is None:
            self._refused.add(index)
            self.refused += 1

    def _violation(self, text: str) -> None:
        if len(self.violations) < _MAX_VIOLATIONS:
            self.violations.append(text)
        logger.warning("invariant violated: %s", text)

    def observe_raw(self, value: bytes | None) -> None:
        """One record value from ``reservations`` or ``orders`` (others are ignored)."""
        if not value:
            return
        try:
            obj = orjson.loads(value)
            event_type = obj["event_type"]
            if event_type not in DECISION_TYPES and event_type not in FINAL_TYPES:
                return
            data = obj["data"]
            at = datetime.fromisoformat(obj["occurred_at"]).timestamp()
            self.observe(event_type, str(obj["event_id"]), at, data)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return

    def observe(self, event_type: str, outcome_id: str, at: float, data: dict[str, Any]) -> None:
        """One outcome envelope: its type, envelope id, occurred_at (epoch s) and data."""
        index = self._index.get(data.get("request_id", ""))
        if index is None:
            return
        self.records_seen += 1
        if event_type in DECISION_TYPES:
            self._on_decision(index, event_type, outcome_id, at, data)
        elif event_type in FINAL_TYPES:
            self._on_final(index, event_type, outcome_id, at, data)

    def _kind(self, event_type: str, data: dict[str, Any]) -> str:
        reason = data.get("reason")
        return f"{event_type}:{reason}" if reason else event_type

    def _on_decision(
        self, index: int, event_type: str, outcome_id: str, at: float, data: dict[str, Any]
    ) -> None:
        known = self._decision_id[index]
        kind = self._kind(event_type, data)
        if known is not None:
            if known != outcome_id:
                self._violation(
                    f"request {self.plan.requests[index].request_id} got two decisions: "
                    f"{self._decision_kind[index]} ({known}) and {kind} ({outcome_id})"
                )
            return
        self._decision_id[index] = outcome_id
        self._decision_kind[index] = kind
        self.decided += 1
        if index in self._refused:
            self._refused.discard(index)
            self.refused -= 1
        self.decisions[kind] += 1
        event_id = self.plan.requests[index].event_id
        if event_type == "SeatsReserved":
            self.reserved += 1
            self._reserved_seats[event_id] += int(data.get("quantity", 0))
            self._check_capacity(event_id)
        else:
            self._rejected[event_id] += 1
        if self.first_decided_at is None or at < self.first_decided_at:
            self.first_decided_at = at
        if self.last_decided_at is None or at > self.last_decided_at:
            self.last_decided_at = at
        sent = self.sent_at[index]
        if not math.isnan(sent):
            self._decision_latency.append(at - sent)

    def _on_final(
        self, index: int, event_type: str, outcome_id: str, at: float, data: dict[str, Any]
    ) -> None:
        known = self._final_id[index]
        kind = self._kind(event_type, data)
        if known is not None:
            if known != outcome_id:
                self._violation(
                    f"request {self.plan.requests[index].request_id} got two final outcomes: "
                    f"{self._final_kind[index]} ({known}) and {kind} ({outcome_id})"
                )
            return
        self._final_id[index] = outcome_id
        self._final_kind[index] = kind
        self.finalized += 1
        self.finals[kind] += 1
        event_id = self.plan.requests[index].event_id
        quantity = int(data.get("quantity", 0))
        if event_type == "OrderConfirmed":
            self._confirmed_seats[event_id] += quantity
            self._check_capacity(event_id)
        else:
            self._released_seats[event_id] += quantity
        if self.last_final_at is None or at > self.last_final_at:
            self.last_final_at = at
        sent = self.sent_at[index]
        if not math.isnan(sent):
            self._final_latency.append(at - sent)

    def _check_capacity(self, event_id: str) -> None:
        capacity = self._capacity.get(event_id, 0)
        live = self._reserved_seats[event_id] - self._released_seats[event_id]
        if live > capacity or self._confirmed_seats[event_id] > capacity:
            self._violation(
                f"event {event_id} oversold: {live} seats held or sold, "
                f"{self._confirmed_seats[event_id]} confirmed, capacity {capacity}"
            )

    def complete(self, wait_for: str = "decided") -> bool:
        """Every request decided (and, for ``final``, every reservation settled)."""
        if self.decided < self.expected:
            return False
        return wait_for != "final" or self.finalized >= self.reserved

    def summary(self) -> OutcomeSummary:
        requests_per_event: Counter[str] = Counter(r.event_id for r in self.plan.requests)
        events = tuple(
            EventTally(
                event_id=e.event_id,
                capacity=e.capacity,
                requests=requests_per_event[e.event_id],
                reserved_seats=self._reserved_seats[e.event_id],
                released_seats=self._released_seats[e.event_id],
                confirmed_seats=self._confirmed_seats[e.event_id],
                rejected=self._rejected[e.event_id],
            )
            for e in self.plan.events
        )
        undecided = tuple(
            self.plan.requests[i].request_id
            for i, known in enumerate(self._decision_id)
            if known is None and i not in self._refused
        )[:5]
        return OutcomeSummary(
            distinct_requests=len(self.plan.requests),
            expected=self.expected,
            decided=self.decided,
            finalized=self.finalized,
            reserved=self.reserved,
            decisions=dict(sorted(self.decisions.items())),
            finals=dict(sorted(self.finals.items())),
            events=events,
            decision_latency=LatencyStats.of(self._decision_latency),
            final_latency=LatencyStats.of(self._final_latency),
            first_decided_at=self.first_decided_at,
            last_decided_at=self.last_decided_at,
            last_final_at=self.last_final_at,
            violations=tuple(self.violations),
            undecided_sample=undecided,
        )


class OutcomeReader:
    """Reads outcome topics (no consumer group) into an :class:`OutcomeTracker`.

    :meth:`start` pins the position: the current end (only what happens from now on) or,
    with ``from_offsets``, offsets taken earlier by :meth:`end_offsets`.
    """

    def __init__(
        self, bootstrap: str, partitions: Mapping[str, int], tracker: OutcomeTracker
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = dict(partitions)
        self.tracker = tracker
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def topics(self) -> list[str]:
        return list(self.partitions)

    async def start(self, from_offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Assign every partition of the topics and seek to the end (or ``from_offsets``)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            max_poll_records=20_000,
            client_id="eventpro-loadgen",
        )
        await consumer.start()
        self._consumer = consumer
        parts = [
            TopicPartition(topic, p)
            for topic, count in self.partitions.items()
            for p in range(count)
        ]
        consumer.assign(parts)
        positions = from_offsets if from_offsets is not None else await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, positions.get(tp, 0))

    async def end_offsets(self) -> dict[TopicPartition, int]:
        if self._consumer is None:
            raise RuntimeError("OutcomeReader.start() first")
        return await self._consumer.end_offsets(list(self._consumer.assignment()))

    async def poll(self, timeout_ms: int = 200) -> int:
        """Read what is there (waiting up to ``timeout_ms``); returns the record count."""
        if self._consumer is None:
            raise RuntimeError("OutcomeReader.start() first")
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        count = 0
        observe = self.tracker.observe_raw
        for records in batches.values():
            for record in records:
                observe(record.value)
            count += len(records)
        return count

    async def run_until(
        self,
        done: Callable[[], bool],
        seconds: float,
        on_progress: Callable[[], None] | None = None,
    ) -> bool:
        """Read until ``done()`` or ``seconds`` pass; returns ``done()``."""
        deadline = time.monotonic() + seconds
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await self.poll(timeout_ms=int(min(remaining, 0.2) * 1000) or 1)
            if on_progress is not None:
                on_progress()
        return True

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            # aiokafka's close cancels and awaits a task of its own; one cancelled before it
            # ever ran raises CancelledError there (a reader stopped right after its start).
            await asyncio.sleep(0)
            await consumer.stop()
