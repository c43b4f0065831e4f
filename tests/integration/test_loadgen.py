"""``eventpro loadgen``: a tiny on-sale rush against a real worker, and its option checks."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from support.cluster import WorkerFactory
from typer.testing import CliRunner

from eventpro.cli import app as cli
from eventpro.loadgen import (
    LoadgenError,
    LoadSpec,
    OutcomeTracker,
    QuantityMix,
    arrival_offsets,
    build_plan,
    run_loadgen,
)

runner = CliRunner()


def _plain(output: str) -> str:
    """CLI output without the error box's borders and line breaks."""
    return " ".join(output.replace("│", " ").split())


def _check_rush(data: dict[str, object], users: int, events: int, capacity: int) -> None:
    assert data["ok"] is True
    outcomes = data["outcomes"]
    assert isinstance(outcomes, dict)
    assert outcomes["decided"] == users
    assert outcomes["timed_out"] is False
    seats = data["seats"]
    assert isinstance(seats, dict)
    for event in seats["per_event"]:
        assert event["reserved_seats"] - event["released_seats"] <= capacity
    # Demand is about three times the seats, so every event sells out exactly.
    assert seats["held_or_sold"] == events * capacity
    invariants = data["invariants"]
    assert isinstance(invariants, dict)
    assert invariants["no_oversell"] is True
    assert invariants["one_outcome_per_request"] is True
    assert invariants["violations"] == []


async def test_rush_through_kafka_and_http_keeps_the_invariants(
    worker_factory: WorkerFactory,
) -> None:
    worker = worker_factory()
    broker_url = f"kafka://{worker_factory.broker}"

    kafka_spec = LoadSpec(
        users=300, events=3, capacity=60, duplicate_rate=0.2, resubmit_delay=0.2, timeout=60
    )
    report = await run_loadgen(
        kafka_spec, broker_url=broker_url, topic_prefix=worker_factory.prefix, progress=False
    )
    assert report.sending.sent == 360
    assert report.sending.accepted == 360
    _check_rush(report.to_dict(), users=300, events=3, capacity=60)
    assert set(report.outcomes.decisions) == {"RequestRejected:sold_out", "SeatsReserved"}
    latency = report.outcomes.decision_latency
    assert latency.count == 300
    assert 0 <= latency.p50_ms <= latency.p99_ms <= latency.max_ms
    assert "no oversell: ok" in report.render_text()

    http_spec = LoadSpec(
        users=120,
        events=2,
        capacity=30,
        duplicate_rate=0.1,
        resubmit_delay=0.2,
        profile="rate",
        rate=400,
        transport="http",
        concurrency=8,
        timeout=60,
    )
    report = await run_loadgen(
        http_spec,
        broker_url=broker_url,
        topic_prefix=worker_factory.prefix,
        api_url=worker.url,
        progress=False,
    )
    assert report.sending.accepted == 132
    assert report.target == worker.url
    _check_rush(report.to_dict(), users=120, events=2, capacity=30)


def test_cli_runs_a_rush_and_writes_json(worker_factory: WorkerFactory, tmp_path: Path) -> None:
    worker_factory()
    out = tmp_path / "report.json"
    result = runner.invoke(
        cli,
        [
            "loadgen",
            "--users", "200",
            "--events", "2",
            "--capacity", "50",
            "--quantity-mix", "1:3,2:1",
            "--profile", "ramp",
            "--rate", "2000",
            "--ramp-seconds", "0.1",
            "--broker-url", worker_factory.broker,
            "--topic-prefix", worker_factory.prefix,
            "--timeout", "60",
            "--no-progress",
            "--json-out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "one outcome per request: ok" in result.output
    data = json.loads(out.read_text())
    assert data["spec"]["quantity_mix"] == "1:3,2:1"
    _check_rush(data, users=200, events=2, capacity=50)


def test_cli_reports_every_bad_option_at_once() -> None:
    result = runner.invoke(
        cli,
        ["loadgen", "--users", "0", "--duplicate-rate", "2", "--profile", "soon", "--timeout", "0"],
    )
    assert result.exit_code == 2
    text = _plain(result.output)
    for expected in ("--users must be at least 1", "--duplicate-rate", "--profile", "--timeout"):
        assert expected in text


def test_cli_explains_a_bad_quantity_mix() -> None:
    result = runner.invoke(cli, ["loadgen", "--quantity-mix", "1:50,two:30"])
    assert result.exit_code == 2
    assert "QUANTITY:WEIGHT" in _plain(result.output)


def test_cli_explains_missing_topics(shared_broker: str) -> None:
    result = runner.invoke(
        cli,
        ["loadgen", "--users", "5", "--broker-url", shared_broker, "--topic-prefix", "nobody-"],
    )
    assert result.exit_code == 2
    assert "start an EventPro worker" in _plain(result.output)


def test_http_transport_needs_an_api_url(shared_broker: str) -> None:
    result = runner.invoke(
        cli, ["loadgen", "--transport", "http", "--broker-url", shared_broker, "--users", "5"]
    )
    assert result.exit_code == 2
    assert "--api-url" in result.output


def test_quantity_mix_parses_and_rejects() -> None:
    mix = QuantityMix.parse("1:50, 2:30,4:20")
    assert mix.weights == ((1, 50), (2, 30), (4, 20))
    assert mix.mean == pytest.approx(1.9)
    for bad in ("", "0:10", "1:-1", "a:b"):
        with pytest.raises(LoadgenError):
            QuantityMix.parse(bad)


def test_plan_is_reproducible_and_resubmissions_follow_their_original() -> None:
    spec = LoadSpec(users=1000, events=4, duplicate_rate=0.1, run_id="fixed", seed=3)
    plan = build_plan(spec)
    assert plan == build_plan(spec)
    assert plan.duplicates == 100
    first = {}
    for send in plan.sends:
        if not send.duplicate:
            first[send.request] = send.offset
        else:
            assert send.request in first
            assert first[send.request] <= send.offset <= first[send.request] + 1.0
    assert {r.event_id for r in plan.requests} == {e.event_id for e in plan.events}


def test_arrival_profiles() -> None:
    constant = arrival_offsets(LoadSpec(profile="rate", rate=100), 201)
    assert constant[200] == pytest.approx(2.0)
    ramp = arrival_offsets(LoadSpec(profile="ramp", rate=100, ramp_seconds=2), 301)
    assert ramp[100] == pytest.approx(2.0)  # 100 arrivals during the 2 s ramp to 100/s
    assert ramp[300] == pytest.approx(4.0)
    assert all(a <= b for a, b in itertools.pairwise(ramp))
    assert arrival_offsets(LoadSpec(profile="all"), 3) == [0.0, 0.0, 0.0]


def test_tracker_flags_two_decisions_and_oversell() -> None:
    plan = build_plan(LoadSpec(users=3, events=1, capacity=2, duplicate_rate=0, run_id="t"))
    tracker = OutcomeTracker(plan, [0.0, 0.0, math.nan])
    r0, r1, r2 = plan.requests
    data = {"request_id": r0.request_id, "event_id": r0.event_id, "quantity": 2}
    tracker.observe("SeatsReserved", "o-1", 1.0, data)
    tracker.observe("SeatsReserved", "o-1", 1.5, data)  # the same outcome re-emitted: fine
    assert tracker.summary().violations == ()
    rejected = {**data, "reason": "sold_out"}
    tracker.observe("RequestRejected", "o-2", 2.0, rejected)
    tracker.observe("SeatsReserved", "o-3", 2.0, {**data, "request_id": r1.request_id})
    tracker.observe("RequestRejected", "o-4", 2.0, {**rejected, "request_id": r2.request_id})
    summary = tracker.summary()
    assert summary.decided == 3
    assert not summary.one_outcome_per_request
    assert not summary.no_oversell
    assert summary.oversold_events == (r0.event_id,)
    assert summary.decision_latency.count == 2
    assert summary.decision_latency.max_ms == pytest.approx(2000.0)
