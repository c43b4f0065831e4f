"""Counting facts: definitions, dedup of redelivered records, late records, window listing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventpro.analytics.facts import FactKind, SaleFact, WindowCounts, fact_from
from eventpro.analytics.processor import AnalyticsProcessor, DictSeenStore, DictWindowStore
from eventpro.analytics.views import WindowParamError, parse_window
from eventpro.domain import Reason
from eventpro.schemas import (
    Envelope,
    OrderConfirmed,
    PaymentCaptured,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
)

T0 = 1_700_000_040.0  # a multiple of 10 and of 60
HISTORY = 6


def make_processor() -> AnalyticsProcessor:
    return AnalyticsProcessor(
        totals={},
        windows={10: DictWindowStore(10, {}), 60: DictWindowStore(60, {})},
        seen=DictSeenStore(set()),
        expires=lambda size: size * HISTORY,
    )


def fact(
    fid: str, kind: FactKind, ts: float, qty: int = 1, amount: int = 0, reason: str | None = None
) -> SaleFact:
    return SaleFact(fid, "ev", kind, qty, ts, amount, reason)


def test_facts_from_outcome_events() -> None:
    at = datetime.fromtimestamp(T0 + 1.5, UTC)
    common = {"request_id": "r1", "event_id": "ev", "user_id": "u1"}
    reserved = Envelope.new(
        SeatsReserved(reservation_id="h1", quantity=2, amount_cents=900, expires_at_ms=1, **common),
        source="t",
        occurred_at=at,
    )
    got = fact_from(reserved)
    assert got == SaleFact(reserved.event_id, "ev", FactKind.RESERVED, 2, T0 + 1.5, 900, None)
    rejected = fact_from(
        Envelope.new(RequestRejected(quantity=1, reason=Reason.SOLD_OUT, **common), source="t")
    )
    assert rejected is not None and rejected.reason == "sold_out"
    sold = fact_from(
        Envelope.new(
            OrderConfirmed(
                reservation_id="h1", quantity=2, amount_cents=900, ticket_ids=("a", "b"), **common
            ),
            source="t",
        )
    )
    assert sold is not None and (sold.kind, sold.quantity, sold.amount_cents) == (
        FactKind.SOLD,
        2,
        900,
    )
    released = fact_from(
        Envelope.new(
            SeatsReleased(reservation_id="h1", quantity=2, reason=Reason.EXPIRED, **common),
            source="t",
        )
    )
    assert released is not None and released.kind is FactKind.RELEASED
    captured = PaymentCaptured(reservation_id="h1", amount_cents=900, payment_id="p1", **common)
    assert fact_from(Envelope.new(captured, source="t")) is None


def test_counts_by_definition() -> None:
    p = make_processor()
    p.handle(fact("a", FactKind.RESERVED, T0 + 1, qty=2, amount=900))
    p.handle(fact("b", FactKind.REJECTED, T0 + 2, reason="sold_out"))
    p.handle(fact("c", FactKind.REJECTED, T0 + 3, reason="limit_exceeded"))
    p.handle(fact("d", FactKind.SOLD, T0 + 4, qty=2, amount=900))
    p.handle(fact("e", FactKind.RELEASED, T0 + 5, qty=1))
    sales = p.sales("ev")
    assert sales is not None
    assert sales.totals == WindowCounts(
        requests=3,
        reserved=2,
        sold=2,
        rejected=2,
        released=1,
        revenue_cents=900,
        rejected_by_reason={"sold_out": 1, "limit_exceeded": 1},
    )
    assert sales.watermark == T0 + 5
    ((window, counts),) = p.windows_of("ev", 10)
    assert window.start == T0 and counts == sales.totals


def test_redelivered_fact_is_counted_once() -> None:
    p = make_processor()
    first = p.handle(fact("a", FactKind.SOLD, T0 + 1, qty=3, amount=300))
    again = p.handle(fact("a", FactKind.SOLD, T0 + 1, qty=3, amount=300))
    assert (first.duplicate, again.duplicate) == (False, True)
    sales = p.sales("ev")
    assert sales is not None and sales.totals.sold == 3
    assert p.windows_of("ev", 10)[0][1].sold == 3


def test_records_on_window_edges_go_to_the_next_window() -> None:
    p = make_processor()
    p.handle(fact("a", FactKind.SOLD, T0 + 9.999))
    p.handle(fact("b", FactKind.SOLD, T0 + 10.0))
    p.handle(fact("c", FactKind.SOLD, T0 + 20.0))
    rows = p.windows_of("ev", 10)
    assert [(w.start - T0, c.sold) for w, c in rows] == [(0, 1), (10, 1), (20, 1)]
    assert [(w.start - T0, c.sold) for w, c in p.windows_of("ev", 60)] == [(0, 3)]


def test_late_record_within_expiry_counts_in_its_old_window() -> None:
    p = make_processor()
    p.handle(fact("a", FactKind.SOLD, T0 + 100))
    outcome = p.handle(fact("late", FactKind.SOLD, T0 + 45))  # 10 s window [40, 50) still kept
    assert outcome.late_sizes == ()
    rows = {w.start - T0: c.sold for w, c in p.windows_of("ev", 10)}
    assert rows[40] == 1 and rows[100] == 1
    assert rows[50] == 0  # gaps are listed with zeros


def test_late_record_beyond_expiry_is_dropped_from_that_size_only() -> None:
    p = make_processor()
    p.handle(fact("a", FactKind.SOLD, T0 + 100))
    outcome = p.handle(fact("late", FactKind.SOLD, T0 + 39))  # [30, 40) expired for 10 s
    assert outcome.late_sizes == (10,)
    assert sum(c.sold for _, c in p.windows_of("ev", 10)) == 1
    assert sum(c.sold for _, c in p.windows_of("ev", 60)) == 2  # 60 s windows keep 6 min
    sales = p.sales("ev")
    assert sales is not None and sales.totals.sold == 2 and sales.watermark == T0 + 100


def test_listing_drops_expired_windows_and_unknown_events() -> None:
    p = make_processor()
    p.handle(fact("a", FactKind.SOLD, T0 + 1))
    p.handle(fact("b", FactKind.SOLD, T0 + 1000))
    assert [(w.start - T0, c.sold) for w, c in p.windows_of("ev", 10)] == [(1000, 1)]
    assert p.windows_of("other", 10) == []


def test_window_param() -> None:
    assert parse_window(None, (10, 60)) == 60
    assert parse_window("10", (10, 60)) == 10
    assert parse_window(None, (5, 30)) == 30
    with pytest.raises(WindowParamError, match="one of 10, 60"):
        parse_window("7", (10, 60))
    with pytest.raises(WindowParamError, match="number of seconds"):
        parse_window("abc", (10, 60))
