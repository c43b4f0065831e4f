"""The chaos harness: an on-sale under SIGKILLs, a rebalance, a broker restart and duplicates.

The first tests show the invariant checks catch what they claim to (synthetic records); the
last runs the whole harness at a reduced scale with real broker and worker processes and
asserts every invariant of DESIGN.md.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from eventpro.chaos import ChaosSpec, build_plan, run_chaos
from eventpro.cli import app
from eventpro.invariants import (
    ApiSnapshot,
    Record,
    SagaRecords,
    check_all,
    check_capacity,
    check_no_loss,
    check_notifications,
    check_sold_and_payments,
    check_terminal,
)
from eventpro.schemas import (
    Envelope,
    NotificationSent,
    OrderConfirmed,
    PaymentCaptured,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
    TicketRequested,
)

EVENT = "ev-1"


def _rec(topic: str, offset: int, data: object, event_id: str | None = None) -> Record:
    env = Envelope.new(data, source="test")  # type: ignore[arg-type]
    if event_id is not None:
        env = env.model_copy(update={"event_id": event_id})
    return Record(topic, 0, offset, env)


def _reserved(n: int, quantity: int = 1) -> SeatsReserved:
    return SeatsReserved(
        reservation_id=f"res-{n}",
        request_id=f"req-{n}",
        event_id=EVENT,
        user_id=f"u{n}",
        quantity=quantity,
        amount_cents=100 * quantity,
        expires_at_ms=1,
    )


def _captured(n: int, payment: str = "pay") -> PaymentCaptured:
    return PaymentCaptured(
        reservation_id=f"res-{n}",
        request_id=f"req-{n}",
        event_id=EVENT,
        user_id=f"u{n}",
        amount_cents=100,
        payment_id=f"{payment}-{n}",
    )


def _order(n: int, tickets: tuple[str, ...]) -> OrderConfirmed:
    return OrderConfirmed(
        reservation_id=f"res-{n}",
        request_id=f"req-{n}",
        event_id=EVENT,
        user_id=f"u{n}",
        quantity=len(tickets),
        amount_cents=100 * len(tickets),
        ticket_ids=tickets,
    )


def _notified(n: int, notification_id: str, status: str = "confirmed") -> NotificationSent:
    return NotificationSent(
        notification_id=notification_id,
        request_id=f"req-{n}",
        event_id=EVENT,
        user_id=f"u{n}",
        channel="email",
        status=status,  # type: ignore[arg-type]
    )


def _records(**by_topic: list[Record]) -> SagaRecords:
    return SagaRecords({k.replace("_", "-"): tuple(v) for k, v in by_topic.items()})


def _happy() -> SagaRecords:
    return _records(
        ticket_requests=[
            _rec(
                "ticket-requests",
                i,
                TicketRequested(event_id=EVENT, request_id=f"req-{i}", user_id=f"u{i}", quantity=1),
            )
            for i in range(2)
        ],
        reservations=[_rec("reservations", 0, _reserved(0)), _rec("reservations", 1, _reserved(1))],
        payments=[_rec("payments", 0, _captured(0)), _rec("payments", 1, _captured(1))],
        orders=[_rec("orders", 0, _order(0, ("t0",))), _rec("orders", 1, _order(1, ("t1",)))],
        notifications=[
            _rec("notifications", 0, _notified(0, "n0")),
            _rec("notifications", 1, _notified(1, "n1")),
        ],
    )


def _api(sold: int = 2, held: int = 0) -> ApiSnapshot:
    return ApiSnapshot(
        {EVENT: {"sold": sold, "held": held, "capacity": 2}},
        {"req-0": {"status": "confirmed"}, "req-1": {"status": "confirmed"}},
    )


def test_a_clean_run_passes_every_invariant() -> None:
    records = _happy()
    results = check_all(
        records,
        capacities={EVENT: 2},
        acknowledged={"req-0": EVENT, "req-1": EVENT},
        api=_api(),
        sink=[{"request_id": "req-0", "notification_id": "n0"}] * 2
        + [{"request_id": "req-1", "notification_id": "n1"}],
        seen_earlier=list(records.all()),
    )
    assert [(r.number, r.ok, r.violations) for r in results] == [(n, True, ()) for n in range(1, 6)]


def test_overselling_at_any_moment_is_caught_even_if_released_later() -> None:
    records = _records(
        reservations=[
            _rec("reservations", 0, _reserved(0, 2)),
            _rec("reservations", 1, _reserved(1, 1)),
            _rec(
                "reservations",
                2,
                SeatsReleased(
                    reservation_id="res-1",
                    request_id="req-1",
                    event_id=EVENT,
                    user_id="u1",
                    quantity=1,
                    reason="expired",  # type: ignore[arg-type]
                ),
            ),
        ]
    )
    result = check_capacity(records, {EVENT: 2})
    assert not result.ok
    assert "held+sold 3 > capacity 2" in result.violations[0]


def test_two_different_outcomes_and_a_missing_one_are_caught() -> None:
    rejected = RequestRejected(
        request_id="req-0",
        event_id=EVENT,
        user_id="u0",
        quantity=1,
        reason="sold_out",  # type: ignore[arg-type]
    )
    records = _records(
        orders=[_rec("orders", 0, _order(0, ("t0",)))],
        reservations=[_rec("reservations", 0, rejected)],
    )
    result = check_terminal(records, ["req-0", "req-1"])
    assert not result.ok
    assert any("2 distinct terminal outcomes" in v for v in result.violations)
    assert any("req-1: no terminal outcome" in v for v in result.violations)


def test_a_redelivered_outcome_with_the_same_id_counts_once() -> None:
    order = _order(0, ("t0",))
    records = _records(
        orders=[_rec("orders", 0, order, "same-id"), _rec("orders", 1, order, "same-id")]
    )
    assert check_terminal(records, ["req-0"]).ok


def test_seat_sold_twice_double_charge_and_unresolved_capture_are_caught() -> None:
    records = _records(
        payments=[
            _rec("payments", 0, _captured(0)),
            _rec("payments", 1, _captured(0, "other")),
            _rec("payments", 2, _captured(1)),
            _rec("payments", 3, _captured(2)),
        ],
        orders=[_rec("orders", 0, _order(0, ("t0",))), _rec("orders", 1, _order(1, ("t0",)))],
    )
    result = check_sold_and_payments(records, [EVENT], _api(sold=5))
    text = "\n".join(result.violations)
    assert "tickets sold twice: ['t0']" in text
    assert "res-0: charged 2 times" in text
    assert "res-2: captured but neither confirmed nor refunded" in text
    assert "API sold 5 != 2 in orders" in text


def test_two_distinct_notifications_for_one_request_are_caught() -> None:
    records = _records(
        orders=[_rec("orders", 0, _order(0, ("t0",)))],
        notifications=[
            _rec("notifications", 0, _notified(0, "n0")),
            _rec("notifications", 1, _notified(0, "n0-again")),
        ],
    )
    result = check_notifications(records, ["req-0"])
    assert result.violations == ("req-0: 2 distinct notifications (topic)",)


def test_an_acknowledged_request_or_record_that_disappeared_is_caught() -> None:
    before = _happy()
    after = _records(ticket_requests=list(before.in_topic("ticket-requests"))[:1])
    result = check_no_loss({"req-0": EVENT, "req-1": EVENT}, after, before.all())
    assert not result.ok
    assert "req-1: acknowledged but not in ticket-requests" in result.violations
    assert any("reservations[0]@0" in v and "now missing" in v for v in result.violations)


def test_the_plan_is_reproducible_from_its_seed() -> None:
    spec = ChaosSpec(requests=50, events=3, workers=2, seed=9)
    first, again = build_plan(spec), build_plan(spec)
    assert first == again
    assert build_plan(ChaosSpec(requests=50, events=3, workers=2, seed=10)) != first
    assert sum(len(c) for c in first.chunks) == 50
    assert len(first.chunks) == len(spec.faults) + 1
    sent_before_duplicates = {r.request_id for c in first.chunks[:4] for r in c}
    assert {r.request_id for r in first.duplicates} <= sent_before_duplicates


def test_the_cli_rejects_an_unknown_fault() -> None:
    result = CliRunner().invoke(app, ["chaos", "--faults", "kill-everything"])
    assert result.exit_code == 2
    assert "unknown fault" in result.output


async def test_on_sale_under_chaos_keeps_every_invariant(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    """Reduced scale of ``eventpro chaos``: every fault, real processes, no healing of hangs.

    A worker SIGKILLed mid-stream and restarted, one joining (rebalance), the broker SIGKILLed
    and restarted, requests and saga records delivered twice: the load must drain and all five
    invariants hold, checked from the topics, the API and the notification sink.
    """
    spec = ChaosSpec(
        requests=150,
        events=3,
        workers=2,
        seed=3,
        heal_stuck_workers=False,
        drain_timeout=150,
        worker_log_level="INFO",  # the logs in the run directory explain a failure
    )
    lines: list[str] = []
    report = await run_chaos(spec, tmp_path, say=lines.append)
    text = report.render_text()
    (artifacts_dir / "chaos-report.txt").write_text("\n".join([*lines, text]) + "\n")
    assert report.drained, text
    assert [i.kind for i in report.injections] == list(spec.faults), text
    assert [(r.number, r.ok) for r in report.invariants] == [(n, True) for n in range(1, 6)], text
    assert report.worker_restarts_after_broker_loss == 0, text
    assert report.requests == 150 and report.resubmitted > 0 and report.records_redelivered > 0
    assert sum(report.outcomes.values()) == report.requests + report.probes, text
    for injection in report.injections[:3]:
        assert injection.ready_s is not None and injection.resumed_s is not None, text
