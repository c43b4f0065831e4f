"""What one chaos run does, decided up front from its options and seed (reproducible).

The load is cut into chunks; after each chunk but the last one fault is injected while the
workers are still busy with that chunk. Which worker dies, which requests and saga records are
delivered twice, and every request's event and quantity come from ``random.Random(seed)``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Literal, get_args

from eventpro.exceptions import EventProError

__all__ = (
    "DEFAULT_FAULTS",
    "ChaosError",
    "ChaosPlan",
    "ChaosSpec",
    "Fault",
    "PlannedEvent",
    "PlannedRequest",
    "build_plan",
)

logger = logging.getLogger(__name__)

Fault = Literal["kill-worker", "join-worker", "kill-broker", "duplicates"]
DEFAULT_FAULTS: tuple[Fault, ...] = ("kill-worker", "join-worker", "kill-broker", "duplicates")


class ChaosError(EventProError):
    """Bad chaos options, or the on-sale could not be run; the message says what to change."""


@dataclass(frozen=True, slots=True)
class ChaosSpec:
    """Options of one run.

    :param requests: ticket requests (distinct request ids; duplicates come on top).
    :param events: events on sale; requests pick one at random.
    :param workers: worker processes at the start (``join-worker`` adds one more).
    :param capacity: seats per event; 0 = 70 % of the seats the requests ask for, so some
        events sell out.
    :param duplicate_rate: share of requests (and saga records) delivered a second time.
    :param heal_stuck_workers: restart workers that hang after the broker restart (reported);
        when off, such a hang fails the run.
    :param worker_log_level: log level of the workers (their logs are in the data dir).
    """

    requests: int = 200
    events: int = 4
    workers: int = 2
    seed: int = 1
    partitions: int = 4
    capacity: int = 0
    price_cents: int = 2_500
    max_per_user: int = 8
    duplicate_rate: float = 0.1
    faults: tuple[Fault, ...] = DEFAULT_FAULTS
    hold_ttl_seconds: float = 8.0
    drain_timeout: float = 180.0
    heal_stuck_workers: bool = True
    """SIGKILL and restart a worker that hangs in a rebalance after the broker came back."""
    worker_log_level: str = "WARNING"

    def validate(self) -> ChaosSpec:
        """Return self, or raise :class:`ChaosError` naming every bad option."""
        problems = []
        if self.requests < len(self.faults) + 1:
            problems.append(f"--requests must be at least {len(self.faults) + 1} (one per chunk)")
        if self.events < 1:
            problems.append("--events must be at least 1")
        if not 1 <= self.workers <= 16:
            problems.append("--workers must be between 1 and 16")
        if self.partitions < 1:
            problems.append("--partitions must be at least 1")
        if not 0 <= self.duplicate_rate <= 1:
            problems.append("--duplicate-rate must be between 0 and 1")
        unknown = [f for f in self.faults if f not in get_args(Fault)]
        if unknown:
            problems.append(f"unknown fault(s) {unknown}; choose from {list(get_args(Fault))}")
        if problems:
            raise ChaosError("; ".join(problems))
        return self

    @property
    def run_id(self) -> str:
        return f"chaos-s{self.seed}"


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    event_id: str
    capacity: int


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    request_id: str
    event_id: str
    user_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    spec: ChaosSpec
    events: tuple[PlannedEvent, ...]
    chunks: tuple[tuple[PlannedRequest, ...], ...]
    duplicates: tuple[PlannedRequest, ...]
    victims: tuple[int, ...]
    """Index of the worker SIGKILLed by each ``kill-worker`` fault, in order."""
    record_share: float
    """Share of the saga's reservations/payments records delivered again by ``duplicates``."""

    @property
    def requests(self) -> tuple[PlannedRequest, ...]:
        return tuple(r for chunk in self.chunks for r in chunk)


def build_plan(spec: ChaosSpec) -> ChaosPlan:
    """Events, requests split into ``len(faults) + 1`` chunks, duplicates and kill victims."""
    spec.validate()
    rng = random.Random(spec.seed)
    event_ids = [f"{spec.run_id}-e{i}" for i in range(spec.events)]
    requests = [
        PlannedRequest(
            request_id=f"{spec.run_id}-r{i:06d}",
            event_id=rng.choice(event_ids),
            user_id=f"{spec.run_id}-u{i:06d}",
            quantity=rng.choices((1, 2, 3, 4), weights=(50, 30, 10, 10))[0],
        )
        for i in range(spec.requests)
    ]
    asked = sum(r.quantity for r in requests)
    capacity = spec.capacity or max(1, int(asked * 0.7 / spec.events))
    events = tuple(PlannedEvent(e, capacity) for e in event_ids)
    parts = len(spec.faults) + 1
    size, rest = divmod(len(requests), parts)
    chunks: list[tuple[PlannedRequest, ...]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < rest else 0)
        chunks.append(tuple(requests[start:end]))
        start = end
    # Resubmissions are drawn from what was sent before the ``duplicates`` fault.
    sent_before = [
        r
        for chunk in chunks[
            : spec.faults.index("duplicates") + 1 if "duplicates" in spec.faults else 0
        ]
        for r in chunk
    ]
    duplicates = tuple(rng.sample(sent_before, round(len(sent_before) * spec.duplicate_rate)))
    kills = sum(1 for f in spec.faults if f == "kill-worker")
    victims = tuple(rng.randrange(spec.workers) for _ in range(kills))
    return ChaosPlan(spec, events, tuple(chunks), duplicates, victims, spec.duplicate_rate)
