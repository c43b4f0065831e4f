"""The requests of one run, decided up front from the spec and its seed (reproducible)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from eventpro.loadgen.spec import LoadSpec, arrival_offsets

__all__ = ("LoadPlan", "PlannedEvent", "PlannedRequest", "PlannedSend", "build_plan")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    event_id: str
    name: str
    capacity: int
    price_cents: int
    max_per_user: int


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    index: int
    request_id: str
    event_id: str
    user_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """One submission: ``request`` (an index into :attr:`LoadPlan.requests`) at ``offset`` s."""

    offset: float
    request: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class LoadPlan:
    spec: LoadSpec
    events: tuple[PlannedEvent, ...]
    requests: tuple[PlannedRequest, ...]
    sends: tuple[PlannedSend, ...]

    @property
    def duplicates(self) -> int:
        return len(self.sends) - len(self.requests)

    def capacity_of(self) -> dict[str, int]:
        return {event.event_id: event.capacity for event in self.events}


def build_plan(spec: LoadSpec) -> LoadPlan:
    """Events, one request per user (random event, quantity from the mix) and their schedule.

    Resubmissions reuse the request_id of a random original and follow it within
    ``spec.resubmit_delay`` seconds.
    """
    spec.validate()
    rng = random.Random(spec.seed)
    events = tuple(
        PlannedEvent(
            event_id=spec.event_id(i),
            name=f"Loadgen {spec.run_id} event {i}",
            capacity=spec.capacity,
            price_cents=spec.price_cents,
            max_per_user=spec.max_per_user,
        )
        for i in range(spec.events)
    )
    quantities = rng.choices(
        spec.quantity_mix.quantities,
        weights=[w for _, w in spec.quantity_mix.weights],
        k=spec.users,
    )
    requests = tuple(
        PlannedRequest(
            index=i,
            request_id=spec.request_id(i),
            event_id=events[rng.randrange(spec.events)].event_id,
            user_id=spec.user_id(i),
            quantity=quantities[i],
        )
        for i in range(spec.users)
    )
    offsets = arrival_offsets(spec, spec.users)
    sends = [PlannedSend(offsets[i], i, False) for i in range(spec.users)]
    duplicates = round(spec.users * spec.duplicate_rate)
    for original in rng.sample(range(spec.users), duplicates):
        delay = rng.uniform(0.0, spec.resubmit_delay)
        sends.append(PlannedSend(offsets[original] + delay, original, True))
    sends.sort(key=lambda send: (send.offset, send.duplicate))
    return LoadPlan(spec=spec, events=events, requests=requests, sends=tuple(sends))
