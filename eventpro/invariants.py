"""DESIGN.md's five invariants, computed from what the topics hold and what the API answers.

Pure functions over decoded records (:class:`SagaRecords`) and HTTP snapshots
(:class:`ApiSnapshot`), so the chaos harness, the integration tests and the benchmarks judge a
run the same way. Each check returns an :class:`InvariantResult` listing the violations it
found (capped), never raising: a report shows every broken invariant at once.

Under at-least-once processing an outcome may be emitted twice after a crash; the agents give
outcome envelopes deterministic ids, so "one outcome" means one *distinct* envelope id (and one
content). Two different outcomes for one request are a violation.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
)

__all__ = (
    "TERMINAL_STATUSES",
    "ApiSnapshot",
    "InvariantResult",
    "Record",
    "SagaRecords",
    "check_all",
    "check_capacity",
    "check_no_loss",
    "check_notifications",
    "check_sold_and_payments",
    "check_terminal",
    "outcomes_by_request",
)

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"confirmed", "rejected", "failed"})
_MAX_LISTED = 10
_STATUS_OF = {OrderConfirmed: "confirmed", RequestRejected: "rejected", SeatsReleased: "failed"}


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record and where it was read."""

    topic: str
    partition: int
    offset: int
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class SagaRecords:
    """Every decodable record of the saga's topics, in partition order (logical topic names)."""

    by_topic: Mapping[str, Sequence[Record]]
    undecodable: int = 0

    def all(self) -> Iterable[Record]:
        for records in self.by_topic.values():
            yield from records

    def of(self, cls: type) -> list[Envelope]:
        return [r.envelope for r in self.all() if isinstance(r.envelope.data, cls)]

    def in_topic(self, logical: str) -> Sequence[Record]:
        return self.by_topic.get(logical, ())


@dataclass(frozen=True, slots=True)
class ApiSnapshot:
    """What the HTTP API answered: ``events`` by event_id, request ``statuses`` by request_id."""

    events: Mapping[str, Mapping[str, Any]]
    statuses: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class InvariantResult:
    number: int
    name: str
    ok: bool
    checked: str
    violations: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "ok": self.ok,
            "checked": self.checked,
            "violations": list(self.violations),
        }


def _result(number: int, name: str, checked: str, violations: list[str]) -> InvariantResult:
    listed = violations[:_MAX_LISTED]
    if len(violations) > _MAX_LISTED:
        listed.append(f"... and {len(violations) - _MAX_LISTED} more")
    return InvariantResult(number, name, not violations, checked, tuple(listed))


def outcomes_by_request(records: SagaRecords) -> dict[str, dict[str, Envelope]]:
    """request_id -> {distinct envelope id -> terminal outcome envelope}."""
    found: dict[str, dict[str, Envelope]] = defaultdict(dict)
    for cls in _STATUS_OF:
        for env in records.of(cls):
            found[env.data.request_id][env.event_id] = env
    return dict(found)


def check_capacity(
    records: SagaRecords, capacities: Mapping[str, int], api: ApiSnapshot | None = None
) -> InvariantResult:
    """1. sold + held <= capacity at every moment: replayed from ``reservations`` in order.

    Every change of an event's held + sold seats is on its one ``reservations`` partition
    (reserve adds, release subtracts; a capture moves held to sold), so the running total after
    each record is the event's held + sold at that moment. The API's final numbers must agree.
    """
    violations: list[str] = []
    reserved: dict[str, set[str]] = defaultdict(set)
    released: dict[str, set[str]] = defaultdict(set)
    peak: Counter[str] = Counter()
    running: Counter[str] = Counter()
    for rec in records.in_topic("reservations"):
        data = rec.envelope.data
        if isinstance(data, SeatsReserved) and data.reservation_id not in reserved[data.event_id]:
            reserved[data.event_id].add(data.reservation_id)
            running[data.event_id] += data.quantity
        elif isinstance(data, SeatsReleased) and data.reservation_id not in released[data.event_id]:
            released[data.event_id].add(data.reservation_id)
            running[data.event_id] -= data.quantity
        else:
            continue
        event_id = data.event_id
        peak[event_id] = max(peak[event_id], running[event_id])
        cap = capacities.get(event_id)
        if cap is not None and running[event_id] > cap:
            violations.append(
                f"{event_id}: held+sold {running[event_id]} > capacity {cap} after "
                f"reservations[{rec.partition}]@{rec.offset}"
            )
    for event_id in released:
        unknown = released[event_id] - reserved[event_id]
        if unknown:
            violations.append(
                f"{event_id}: released reservations never reserved: {sorted(unknown)}"
            )
    if api is not None:
        for event_id, cap in capacities.items():
            state = api.events.get(event_id)
            if state is None:
                violations.append(f"{event_id}: the API does not know the event")
                continue
            if state["sold"] + state["held"] > cap:
                violations.append(f"{event_id}: API sold {state['sold']} + held {state['held']}")
            if state["held"] != running[event_id] - state["sold"]:
                violations.append(
                    f"{event_id}: API held {state['held']} != topics' "
                    f"{running[event_id] - state['sold']} (reserved-released-sold)"
                )
    worst = max((peak[e] / c for e, c in capacities.items() if c), default=0.0)
    checked = f"{len(capacities)} event(s), peak held+sold {worst:.0%} of capacity"
    return _result(1, "sold + held <= capacity", checked, violations)


def check_terminal(
    records: SagaRecords, request_ids: Iterable[str], api: ApiSnapshot | None = None
) -> InvariantResult:
    """2. Every accepted request has exactly one terminal outcome (topics) and status (API)."""
    violations: list[str] = []
    outcomes = outcomes_by_request(records)
    wanted = list(request_ids)
    for rid in wanted:
        found = outcomes.get(rid, {})
        if not found:
            violations.append(f"{rid}: no terminal outcome on the topics")
            continue
        kinds = {type(env.data).__name__ for env in found.values()}
        if len(found) > 1:
            violations.append(f"{rid}: {len(found)} distinct terminal outcomes {sorted(kinds)}")
            continue
        outcome = next(iter(found.values()))
        if api is not None:
            status = api.statuses.get(rid)
            expected = _STATUS_OF[type(outcome.data)]
            if status is None:
                violations.append(f"{rid}: the API has no status")
            elif status.get("status") != expected:
                violations.append(f"{rid}: API status {status.get('status')!r}, topic {expected}")
    extra = set(outcomes) - set(wanted)
    if extra:
        violations.append(f"outcomes for requests never sent: {sorted(extra)[:5]}")
    checked = f"{len(wanted)} request(s)"
    return _result(2, "exactly one terminal status per request", checked, violations)


def check_sold_and_payments(
    records: SagaRecords, event_ids: Iterable[str], api: ApiSnapshot | None = None
) -> InvariantResult:
    """3. Seats sold == tickets in confirmed orders; each capture confirmed xor refunded.

    Also: no ticket id in two orders (no seat sold twice), one charge per reservation.
    """
    violations: list[str] = []
    orders: dict[str, OrderConfirmed] = {}
    for env in records.of(OrderConfirmed):
        data = env.data
        previous = orders.setdefault(data.reservation_id, data)
        if previous.ticket_ids != data.ticket_ids:
            violations.append(f"{data.reservation_id}: confirmed twice with different tickets")
    tickets: dict[str, Counter[str]] = defaultdict(Counter)
    for order in orders.values():
        tickets[order.event_id].update(order.ticket_ids)
    for event_id, counts in tickets.items():
        twice = [t for t, n in counts.items() if n > 1]
        if twice:
            violations.append(f"{event_id}: tickets sold twice: {twice[:5]}")
    charges: dict[str, set[str]] = defaultdict(set)
    for env in records.of(PaymentCaptured):
        charges[env.data.reservation_id].add(env.data.payment_id)
    for reservation_id, payment_ids in charges.items():
        if len(payment_ids) > 1:
            violations.append(f"{reservation_id}: charged {len(payment_ids)} times")
    refunded = {env.data.reservation_id for env in records.of(RefundIssued)}
    captured = set(charges)
    for reservation_id in sorted(captured - set(orders) - refunded):
        violations.append(f"{reservation_id}: captured but neither confirmed nor refunded")
    for reservation_id in sorted(set(orders) & refunded):
        violations.append(f"{reservation_id}: confirmed and refunded")
    for reservation_id in sorted(set(orders) - captured):
        violations.append(f"{reservation_id}: confirmed without a captured payment")
    events = list(event_ids)
    if api is not None:
        for event_id in events:
            sold = sum(len(o.ticket_ids) for o in orders.values() if o.event_id == event_id)
            state = api.events.get(event_id)
            if state is not None and state["sold"] != sold:
                violations.append(f"{event_id}: API sold {state['sold']} != {sold} in orders")
    checked = (
        f"{len(orders)} order(s), {len(captured)} capture(s), {len(refunded)} refund(s), "
        f"{len(events)} event(s)"
    )
    return _result(
        3, "sold == tickets in orders; captures confirmed xor refunded", checked, violations
    )


def check_notifications(
    records: SagaRecords,
    request_ids: Iterable[str],
    sink: Sequence[Mapping[str, Any]] | None = None,
    *,
    require_all: bool = True,
) -> InvariantResult:
    """4. At most one notification per terminal outcome (``notifications`` and the sink).

    The sink may log a notification twice across a crash; it carries the same
    ``notification_id`` (the provider's idempotency key), so distinct ids are what count.
    With ``require_all`` every request must also have been notified.
    """
    violations: list[str] = []
    wanted = list(request_ids)
    outcomes = outcomes_by_request(records)
    on_topic: dict[str, set[str]] = defaultdict(set)
    for env in records.of(NotificationSent):
        on_topic[env.data.request_id].add(env.data.notification_id)
        found = outcomes.get(env.data.request_id, {})
        statuses = {_STATUS_OF[type(o.data)] for o in found.values()}
        if statuses and env.data.status.value not in statuses:
            violations.append(
                f"{env.data.request_id}: notified {env.data.status.value}, outcome {statuses}"
            )
    sent: dict[str, set[str]] = defaultdict(set)
    for line in sink or ():
        sent[line["request_id"]].add(line["notification_id"])
    for rid in wanted:
        for where, ids in (("topic", on_topic.get(rid, set())), ("sink", sent.get(rid, set()))):
            if len(ids) > 1:
                violations.append(f"{rid}: {len(ids)} distinct notifications ({where})")
        if require_all and not on_topic.get(rid):
            violations.append(f"{rid}: never notified")
        if require_all and sink is not None and not sent.get(rid):
            violations.append(f"{rid}: nothing delivered to the sink")
    raw = len(sink or ())
    distinct = sum(len(ids) for ids in sent.values())
    checked = (
        f"{sum(len(v) for v in on_topic.values())} on the topic, {distinct} delivered "
        f"({raw - distinct} repeated delivery(ies) with the same id)"
    )
    return _result(4, "at most one notification per outcome", checked, violations)


def check_no_loss(
    acknowledged: Mapping[str, str],
    final: SagaRecords,
    seen_earlier: Iterable[Record] = (),
) -> InvariantResult:
    """5. Nothing the broker acknowledged is lost.

    ``acknowledged`` (request_id -> event_id) were acked to the producer: each must be in
    ``ticket-requests`` now. ``seen_earlier`` are records read during the run (before crashes):
    each must still be at the same partition and offset with the same envelope.
    """
    violations: list[str] = []
    stored = {
        env.data.request_id
        for env in (r.envelope for r in final.in_topic("ticket-requests"))
        if isinstance(env.data, TicketRequested)
    }
    missing = sorted(set(acknowledged) - stored)
    violations.extend(f"{rid}: acknowledged but not in ticket-requests" for rid in missing)
    index = {(r.topic, r.partition, r.offset): r.envelope.event_id for r in final.all()}
    earlier = 0
    for rec in seen_earlier:
        earlier += 1
        now = index.get((rec.topic, rec.partition, rec.offset))
        if now != rec.envelope.event_id:
            violations.append(
                f"{rec.topic}[{rec.partition}]@{rec.offset}: was {rec.envelope.event_type} "
                f"{rec.envelope.event_id}, now {now or 'missing'}"
            )
    checked = f"{len(acknowledged)} acknowledged request(s), {earlier} record(s) read mid-run"
    return _result(5, "nothing acknowledged is lost", checked, violations)


def check_all(
    records: SagaRecords,
    *,
    capacities: Mapping[str, int],
    acknowledged: Mapping[str, str],
    api: ApiSnapshot | None = None,
    sink: Sequence[Mapping[str, Any]] | None = None,
    seen_earlier: Iterable[Record] = (),
) -> list[InvariantResult]:
    """All five invariants for one run."""
    request_ids = sorted(acknowledged)
    return [
        check_capacity(records, capacities, api),
        check_terminal(records, request_ids, api),
        check_sold_and_payments(records, capacities, api),
        check_notifications(records, request_ids, sink),
        check_no_loss(acknowledged, records, seen_earlier),
    ]
