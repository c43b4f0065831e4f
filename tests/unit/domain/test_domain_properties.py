"""Property test: any interleaving of creates, requests, duplicates, captures, declines and
hold expiries keeps ``held + sold <= capacity`` and gives each request one terminal outcome.

The machine plays a thin agent: it keeps the four tables as dicts, calls the pure functions
and writes back exactly what each result says changed.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from eventpro.domain import (
    CreateEvent,
    DecisionKind,
    EventInventory,
    Hold,
    Payment,
    Reason,
    RequestStatus,
    SagaKind,
    SagaResult,
    Status,
    TicketRequest,
    adjust_user_tickets,
    confirm_hold,
    create_event,
    decide_request,
    expire_holds,
    release_hold,
    request_key,
    reservation_id_for,
    user_key,
)

EVENTS = ("ev-a", "ev-b", "ev-missing")
USERS = ("u1", "u2", "u3")
TTL = 1_000
MAX_QUANTITY = 5


class InventoryMachine(RuleBasedStateMachine):
    """The inventory agent's tables, driven by random interleavings."""

    requests = Bundle("requests")
    reserved = Bundle("reserved")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.inventory: dict[str, EventInventory] = {}
        self.holds: dict[str, Hold] = {}
        self.statuses: dict[str, RequestStatus] = {}
        self.users: dict[str, int] = {}
        self.terminal_outcomes: Counter[str] = Counter()
        self.captured: set[str] = set()
        self.refunds: Counter[str] = Counter()
        self.counter = 0

    @initialize(capacity=st.integers(1, 12), max_per_user=st.integers(1, 6))
    def create_first(self, capacity: int, max_per_user: int) -> None:
        self.create("ev-a", capacity, max_per_user)

    def snapshot(self) -> tuple[object, ...]:
        return (dict(self.inventory), dict(self.holds), dict(self.statuses), dict(self.users))

    def record_status(self, key: str, new: RequestStatus | None) -> None:
        if new is None:
            return
        old = self.statuses.get(key)
        if old is not None and old.is_terminal:
            assert new.status is old.status, f"terminal {old.status} became {new.status}"
        elif new.is_terminal:
            self.terminal_outcomes[key] += 1
        self.statuses[key] = new

    def apply_saga(self, result: SagaResult, event_id: str, request_id: str) -> None:
        if not result.changed:
            return
        if result.inventory is not None:
            self.inventory[event_id] = result.inventory
        if result.user_tickets_delta and result.status is not None:
            ukey = user_key(event_id, result.status.user_id)
            self.users[ukey] = adjust_user_tickets(
                self.users.get(ukey, 0), result.user_tickets_delta
            )
        if result.removed_hold is not None:
            del self.holds[result.removed_hold.reservation_id]
        if result.refund is not None:
            self.refunds[result.refund.reservation_id] += 1
        self.record_status(request_key(event_id, request_id), result.status)

    @rule(event_id=st.sampled_from(EVENTS), capacity=st.integers(1, 12), limit=st.integers(1, 6))
    def create(self, event_id: str, capacity: int, limit: int) -> None:
        cmd = CreateEvent(event_id, "Show", capacity, 1000, limit)
        result = create_event(self.inventory.get(event_id), cmd, now_ms=self.now)
        if result.changed:
            self.inventory[event_id] = result.inventory

    @rule(
        target=requests,
        event_id=st.sampled_from(EVENTS),
        user_id=st.sampled_from(USERS),
        quantity=st.integers(-1, MAX_QUANTITY + 1),
    )
    def request(self, event_id: str, user_id: str, quantity: int) -> TicketRequest:
        self.counter += 1
        req = TicketRequest(f"r{self.counter}", event_id, user_id, quantity)
        self.decide(req)
        return req

    def decide(self, req: TicketRequest) -> DecisionKind:
        key = request_key(req.event_id, req.request_id)
        ukey = user_key(req.event_id, req.user_id)
        decision = decide_request(
            self.inventory.get(req.event_id),
            self.users.get(ukey, 0),
            self.statuses.get(key),
            req,
            now_ms=self.now,
            hold_ttl_ms=TTL,
            max_quantity=MAX_QUANTITY,
        )
        if decision.kind is DecisionKind.RESERVED:
            self.inventory[req.event_id] = decision.inventory
            self.users[ukey] = decision.user_tickets
            self.holds[decision.hold.reservation_id] = decision.hold
        if decision.changed:
            self.record_status(key, decision.status)
        return decision.kind

    @rule(req=requests)
    def resend(self, req: TicketRequest) -> None:
        before = self.snapshot()
        assert self.decide(req) is DecisionKind.DUPLICATE
        assert self.snapshot() == before

    @rule(target=reserved, req=requests)
    def pay_for(self, req: TicketRequest) -> object:
        status = self.statuses.get(request_key(req.event_id, req.request_id))
        if status is None or status.reservation_id is None:
            return multiple()
        return req

    @rule(req=reserved, duplicate=st.booleans())
    def capture(self, req: TicketRequest, duplicate: bool) -> None:
        rid = reservation_id_for(req.event_id, req.request_id)
        payment = Payment(rid, req.request_id, req.event_id, 0, f"pay-{rid}")
        for _ in range(2 if duplicate else 1):
            before = self.snapshot()
            result = confirm_hold(
                self.inventory.get(req.event_id),
                self.holds.get(rid),
                self.statuses.get(request_key(req.event_id, req.request_id)),
                payment,
                now_ms=self.now,
            )
            if result.kind is SagaKind.DUPLICATE:
                assert self.snapshot() == before
            self.captured.add(rid)
            self.apply_saga(result, req.event_id, req.request_id)

    @rule(req=consumes(reserved))
    def decline(self, req: TicketRequest) -> None:
        rid = reservation_id_for(req.event_id, req.request_id)
        before = self.snapshot()
        result = release_hold(
            self.inventory.get(req.event_id),
            self.holds.get(rid),
            self.statuses.get(request_key(req.event_id, req.request_id)),
            Reason.PAYMENT_DECLINED,
            now_ms=self.now,
        )
        if result.kind is SagaKind.DUPLICATE:
            assert self.snapshot() == before
        self.apply_saga(result, req.event_id, req.request_id)

    @rule(step=st.integers(0, 2 * TTL))
    def tick(self, step: int) -> None:
        self.now += step
        self.expire()

    def expire(self) -> None:
        for hold in expire_holds(list(self.holds.values()), self.now):
            result = release_hold(
                self.inventory.get(hold.event_id),
                hold,
                self.statuses.get(request_key(hold.event_id, hold.request_id)),
                Reason.EXPIRED,
                now_ms=self.now,
            )
            assert result.kind is SagaKind.RELEASED
            self.apply_saga(result, hold.event_id, hold.request_id)

    @invariant()
    def never_oversold(self) -> None:
        for inv in self.inventory.values():
            assert inv.held >= 0
            assert inv.sold >= 0
            assert inv.held + inv.sold <= inv.capacity

    @invariant()
    def counters_match_holds_and_orders(self) -> None:
        held: Counter[str] = Counter()
        sold: Counter[str] = Counter()
        per_user: Counter[str] = Counter()
        for hold in self.holds.values():
            held[hold.event_id] += hold.quantity
            per_user[user_key(hold.event_id, hold.user_id)] += hold.quantity
        for status in self.statuses.values():
            if status.status is Status.CONFIRMED:
                assert len(status.ticket_ids) == status.quantity
                sold[status.event_id] += status.quantity
                per_user[user_key(status.event_id, status.user_id)] += status.quantity
        for event_id, inv in self.inventory.items():
            assert inv.held == held[event_id]
            assert inv.sold == sold[event_id]
        for ukey, count in self.users.items():
            assert count == per_user[ukey]

    @invariant()
    def at_most_one_terminal_outcome(self) -> None:
        assert all(count == 1 for count in self.terminal_outcomes.values())

    @invariant()
    def every_capture_confirmed_or_refunded(self) -> None:
        for status in self.statuses.values():
            rid = status.reservation_id
            if rid in self.captured:
                assert (status.status is Status.CONFIRMED) != (rid in self.refunds)
        assert all(count == 1 for count in self.refunds.values())

    def teardown(self) -> None:
        self.now += 10 * TTL
        self.expire()
        self.never_oversold()
        for key, status in self.statuses.items():
            assert status.is_terminal, f"{key} ended {status.status}"
            assert self.terminal_outcomes[key] == 1
        assert not self.holds


InventoryMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestInventoryMachine = InventoryMachine.TestCase
