"""What the inventory agent does with one decoded record: load, decide, write, say what to emit.

No Faust here: :class:`InventoryProcessor` works on a :class:`~eventpro.tables.TicketingState`
(Faust tables in the worker, dicts in tests) and returns :class:`Outgoing` records; the agent
sends them. The decisions themselves are the pure functions of :mod:`eventpro.domain`.

Outcome records carry deterministic envelope ids (``uuid5`` of the outcome type and the
request or reservation), and a redelivered or resubmitted request re-emits its *decision*
(``SeatsReserved`` while the hold is live, or ``RequestRejected``) with the same id and writes
nothing. That heals a crash that stored the decision but lost the emitted record; consumers
deduplicate by envelope ``event_id``, so each request still has exactly one outcome.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from eventpro.domain import (
    EVENTPRO_NAMESPACE,
    CreateKind,
    DecisionKind,
    Hold,
    Reason,
    RequestStatus,
    SagaResult,
    Status,
    TicketRequest,
    adjust_user_tickets,
    create_event,
    decide_request,
    expire_holds,
    release_hold,
    reservation_id_for,
    status_from_hold,
    uuid5_str,
)
from eventpro.exceptions import EventProError
from eventpro.schemas import (
    Envelope,
    EventCreated,
    EventData,
    HoldExpiryTick,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
    TicketRequested,
)
from eventpro.tables.expiry import HoldExpiryIndex
from eventpro.tables.state import TicketingState
from eventpro.topics import RESERVATIONS, partition_for_key

__all__ = (
    "SOURCE",
    "Coordinates",
    "EmittedHere",
    "InventoryProcessor",
    "Outgoing",
    "RecentKeys",
    "RecordRefused",
    "outcome_event_id",
)

logger = logging.getLogger(__name__)

SOURCE = "eventpro-inventory"
"""The envelope ``source`` of every event the inventory agent emits."""

_REJECTION_DETAIL: dict[Reason, str] = {
    Reason.INVALID: "quantity must be between 1 and the per-request maximum",
    Reason.UNKNOWN_EVENT: "no event with this event_id is on sale",
    Reason.LIMIT_EXCEEDED: "the per-user ticket limit of this event would be exceeded",
    Reason.SOLD_OUT: "not enough seats left",
}


class RecordRefused(EventProError):
    """A readable record the inventory must not apply; it goes to the dead-letter topic.

    ``reason`` is the dead letter's machine-readable reason. Fix the producer (key,
    partitioner, event spec) and replay the dead letter.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Coordinates:
    """Where a record came from, for logs and dead letters."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce: logical topic name, key, envelope, optional explicit partition."""

    topic: str
    key: str | None
    envelope: Envelope
    partition: int | None = None


class RecentKeys:
    """A set of keys that forgets the oldest past ``limit``: memory stays bounded."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._keys[key] = None
        if len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        """Forget everything."""
        self._keys.clear()


class EmittedHere(RecentKeys):
    """Keys of outcomes this process emitted, the oldest forgotten past ``limit``.

    Forgetting is safe: a forgotten outcome is re-emitted with its deterministic id, which
    consumers deduplicate. :meth:`clear` when partitions move: their records may come from
    elsewhere.
    """

    def __init__(self, limit: int = 200_000) -> None:
        super().__init__(limit)


def _request_outcome(status: RequestStatus) -> str:
    return f"request/{status.event_id}/{status.request_id}"


def outcome_event_id(event_type: str, *parts: str) -> str:
    """Deterministic envelope id of an outcome, the same on every replay."""
    return uuid5_str(EVENTPRO_NAMESPACE, "/outcomes/" + "/".join((event_type, *parts)))


class InventoryProcessor:
    """Applies ticket-requests / inventory-ticks records to the ticketing state.

    :param partitions: partition count of ticket-requests (to check a record's partition).
    :param clock_ms: wall clock in epoch milliseconds (injected for tests).
    :param emitted_here: with ``exactly_once``, the outcomes this process emitted itself;
        a record decided by this very process is in the same or an already committed
        transaction, so a second pass (Faust re-reading it after a seek) emits nothing.
        ``None`` (at least once): a decided record always re-emits its outcome, which heals
        an outcome lost in a crash after its state was stored.
    """

    def __init__(
        self,
        state: TicketingState,
        index: HoldExpiryIndex,
        *,
        partitions: int,
        hold_ttl_ms: int,
        max_quantity: int,
        clock_ms: Callable[[], int],
        emitted_here: EmittedHere | None = None,
    ) -> None:
        self.state = state
        self.index = index
        self.partitions = partitions
        self.hold_ttl_ms = hold_ttl_ms
        self.max_quantity = max_quantity
        self.clock_ms = clock_ms
        self.emitted_here = emitted_here

    def handle(self, envelope: Envelope, where: Coordinates) -> list[Outgoing]:
        """Apply one record; returns what to emit.

        :raises RecordRefused: the record is readable but must not be applied here.
        """
        data = envelope.data
        if isinstance(data, TicketRequested):
            self._check_partition(data.event_id, where)
            return self.on_ticket_requested(envelope, data)
        if isinstance(data, EventCreated):
            self._check_partition(data.event_id, where)
            return self.on_event_created(envelope, data)
        if isinstance(data, HoldExpiryTick):
            return self.on_tick(envelope, data, where.partition)
        raise RecordRefused(
            "unexpected_event_type",
            f"{envelope.event_type} does not belong on {where.topic}; the inventory agent "
            "reads TicketRequested, EventCreated and HoldExpiryTick only",
        )

    def _check_partition(self, event_id: str, where: Coordinates) -> None:
        expected = partition_for_key(event_id.encode("utf-8"), self.partitions)
        if expected != where.partition:
            raise RecordRefused(
                "wrong_partition",
                f"event {event_id!r} belongs to partition {expected} but the record is on "
                f"{where}; key records by event_id with Kafka's murmur2 partitioner "
                "(librdkafka: partitioner=murmur2_random)",
            )

    def on_event_created(self, envelope: Envelope, data: EventCreated) -> list[Outgoing]:
        """Create an event's inventory; a same-spec re-create is a no-op."""
        creation = create_event(
            self.state.inventory(data.event_id), data.to_command(), now_ms=self.clock_ms()
        )
        if creation.kind is CreateKind.CREATED and creation.inventory is not None:
            self.state.put_inventory(creation.inventory)
            logger.info(
                "event %s created capacity=%d correlation_id=%s",
                data.event_id,
                data.capacity,
                envelope.correlation_id,
            )
        elif creation.kind in (CreateKind.CONFLICT, CreateKind.INVALID):
            raise RecordRefused(f"event_{creation.kind.value}", creation.detail)
        return []

    def on_ticket_requested(self, envelope: Envelope, data: TicketRequested) -> list[Outgoing]:
        """Decide a request: reserve (hold) or reject; a duplicate writes nothing."""
        request = data.to_command(envelope.correlation_id)
        existing = self.state.status(request.event_id, request.request_id)
        if existing is None or existing.status is Status.PENDING:
            claim = self.state.claim(reservation_id_for(request.event_id, request.request_id))
            if claim is not None:
                return self._finish_reservation(claim, request, envelope.event_id)
        decision = decide_request(
            self.state.inventory(request.event_id),
            self.state.user_tickets(request.event_id, request.user_id),
            existing,
            request,
            now_ms=self.clock_ms(),
            hold_ttl_ms=self.hold_ttl_ms,
            max_quantity=self.max_quantity,
        )
        if decision.kind is DecisionKind.RESERVED and decision.hold is not None:
            if decision.inventory is not None:
                self.state.put_inventory(decision.inventory)
            self.state.put_user_tickets(request.event_id, request.user_id, decision.user_tickets)
            self.state.put_hold(decision.hold)
            self.state.put_status(decision.status)
            self.index.add(decision.hold)
            self._remember(_request_outcome(decision.status))
            return [self._reserved(decision.hold, decision.status, envelope.event_id)]
        if decision.kind is DecisionKind.REJECTED:
            self.state.put_status(decision.status)
            self._remember(_request_outcome(decision.status))
            return [self._rejected(decision.status, envelope.event_id)]
        return self._replay_decision(decision.status, envelope.event_id)

    def _finish_reservation(
        self, claim: Hold, request: TicketRequest, causation_id: str
    ) -> list[Outgoing]:
        """The request's seats are claimed but its status was lost in a crash: record it.

        The claim is written before the status, so a crash between the two leaves this; the
        seats are counted already (:mod:`eventpro.tables.reconcile`), so deciding again
        would hold them twice or reject a request that holds seats.
        """
        status = status_from_hold(
            claim, correlation_id=request.correlation_id, updated_at_ms=self.clock_ms()
        )
        self.state.put_status(status)
        if not claim.sold:
            self.index.add(claim)
        logger.warning(
            "request %s already holds reservation %s (its status was lost in a crash); "
            "status restored correlation_id=%s",
            request.request_id,
            claim.reservation_id,
            request.correlation_id,
        )
        self._remember(_request_outcome(status))
        return [self._reserved(claim, status, causation_id)]

    def _remember(self, outcome: str) -> None:
        if self.emitted_here is not None:
            self.emitted_here.add(outcome)

    def _emitted_here(self, outcome: str) -> bool:
        return self.emitted_here is not None and outcome in self.emitted_here

    def _replay_decision(self, status: RequestStatus, causation_id: str) -> list[Outgoing]:
        if self._emitted_here(_request_outcome(status)):
            return []
        if status.status is Status.REJECTED:
            return [self._rejected(status, causation_id)]
        if status.reservation_id:
            hold = self.state.claim(status.reservation_id) or self._finished_hold(status)
            if hold is not None:
                return [self._reserved(hold, status, causation_id)]
        return []

    def _finished_hold(self, status: RequestStatus) -> Hold | None:
        """The hold a finished reservation announced, rebuilt from its status.

        A crash can keep a decision's state while losing its ``SeatsReserved``, and the
        hold may be released or sold before the request comes again; re-announcing it (same
        envelope id, expiry = when it finished) keeps every release and sale preceded by its
        reservation. The gateway's idempotency key (reservation_id) means no second charge
        for a reservation already charged; a first charge now is refunded like any capture
        after expiry.
        """
        inventory = self.state.inventory(status.event_id)
        if inventory is None or status.reservation_id is None:
            return None
        return Hold(
            reservation_id=status.reservation_id,
            request_id=status.request_id,
            event_id=status.event_id,
            user_id=status.user_id,
            quantity=status.quantity,
            amount_cents=status.quantity * inventory.price_cents,
            expires_at_ms=status.updated_at_ms,
        )

    def on_tick(self, envelope: Envelope, tick: HoldExpiryTick, partition: int) -> list[Outgoing]:
        """Release the holds of ``partition`` that expired by the tick's ``now_ms``."""
        if not self.index.built:
            count = self.index.rebuild(self.state.holds())
            logger.info("hold expiry index rebuilt with %d live holds", count)
        holds: list[Hold] = []
        for reservation_id in self.index.pop_due(partition, tick.now_ms):
            hold = self.state.hold(reservation_id)
            if hold is not None:
                holds.append(hold)
        out: list[Outgoing] = []
        for hold in expire_holds(holds, tick.now_ms):
            status = self.state.status(hold.event_id, hold.request_id)
            result = release_hold(
                self.state.inventory(hold.event_id),
                hold,
                status,
                Reason.EXPIRED,
                now_ms=tick.now_ms,
            )
            released = self._apply_release(result, hold, envelope.event_id)
            if status is None and released:
                # Claimed, then a crash before the status and SeatsReserved were stored: the
                # reservation is announced before its release, never released unannounced.
                announced = status_from_hold(hold, updated_at_ms=tick.now_ms)
                released.insert(0, self._reserved(hold, announced, envelope.event_id))
            out.extend(released)
        return out

    def _apply_release(self, result: SagaResult, hold: Hold, causation_id: str) -> list[Outgoing]:
        if not result.changed:
            self.state.delete_hold(hold.reservation_id)
            return []
        if result.inventory is not None:
            self.state.put_inventory(result.inventory)
        if result.user_tickets_delta:
            current = self.state.user_tickets(hold.event_id, hold.user_id)
            self.state.put_user_tickets(
                hold.event_id, hold.user_id, adjust_user_tickets(current, result.user_tickets_delta)
            )
        if result.removed_hold is not None:
            self.state.delete_hold(result.removed_hold.reservation_id)
        if result.status is None:
            return []
        self.state.put_status(result.status)
        logger.info(
            "hold %s of request %s expired, %d seats released correlation_id=%s",
            hold.reservation_id,
            hold.request_id,
            hold.quantity,
            result.status.correlation_id,
        )
        if not result.seats_released:
            return []
        released = SeatsReleased.from_status(result.status)
        return [
            self._outgoing(
                released,
                result.status,
                causation_id,
                outcome_event_id(SeatsReleased.EVENT_TYPE, hold.reservation_id),
            )
        ]

    def _reserved(self, hold: Hold, status: RequestStatus, causation_id: str) -> Outgoing:
        return self._outgoing(
            SeatsReserved.from_hold(hold),
            status,
            causation_id,
            outcome_event_id(SeatsReserved.EVENT_TYPE, hold.reservation_id),
        )

    def _rejected(self, status: RequestStatus, causation_id: str) -> Outgoing:
        reason = status.reason or Reason.INVALID
        return self._outgoing(
            RequestRejected.from_status(status, _REJECTION_DETAIL.get(reason, "")),
            status,
            causation_id,
            outcome_event_id(RequestRejected.EVENT_TYPE, status.event_id, status.request_id),
        )

    def _outgoing(
        self, data: EventData, status: RequestStatus, causation_id: str, event_id: str
    ) -> Outgoing:
        envelope = Envelope.new(
            data,
            source=SOURCE,
            correlation_id=status.correlation_id or None,
            causation_id=causation_id,
            event_id=event_id,
        )
        return Outgoing(RESERVATIONS, status.event_id, envelope)
