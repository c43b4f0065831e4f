"""Notifications: one per terminal outcome, never two, whatever is redelivered."""

from __future__ import annotations

from pathlib import Path

import orjson

from eventpro.domain import Reason, Status
from eventpro.notify import NOTIFIED_OUTCOMES, NotificationProcessor, SimulatedSink, is_notified
from eventpro.schemas import (
    Envelope,
    NotificationSent,
    OrderConfirmed,
    PaymentCaptured,
    RequestRejected,
    SeatsReleased,
)


def _order(request_id: str = "r1") -> Envelope:
    data = OrderConfirmed(
        reservation_id="res",
        request_id=request_id,
        event_id="ev",
        user_id="u1",
        quantity=2,
        amount_cents=1000,
        ticket_ids=("t1", "t2"),
    )
    return Envelope.new(data, source="t", correlation_id="corr")


async def test_one_notification_per_outcome_even_when_redelivered(tmp_path: Path) -> None:
    sink = SimulatedSink(tmp_path / "sent.jsonl")
    sent: dict[str, str] = {}
    processor = NotificationProcessor(sent, sink, channel="sms")
    [out] = await processor.handle(_order())
    assert out.topic == "notifications" and out.key == "ev"
    record = out.envelope.data
    assert isinstance(record, NotificationSent)
    assert (record.status, record.channel, record.ticket_ids) == (
        Status.CONFIRMED,
        "sms",
        ("t1", "t2"),
    )
    assert out.envelope.correlation_id == "corr"
    assert await processor.handle(_order()) == []
    assert await processor.handle(_order()) == []
    assert len(sink.sent) == 1
    lines = (tmp_path / "sent.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["request_id"] for line in lines] == ["r1"]


async def test_each_terminal_kind_is_notified_and_others_are_ignored() -> None:
    sink = SimulatedSink()
    processor = NotificationProcessor({}, sink)
    rejected = RequestRejected(
        request_id="r2", event_id="ev", user_id="u", quantity=1, reason=Reason.SOLD_OUT
    )
    released = SeatsReleased(
        reservation_id="x",
        request_id="r3",
        event_id="ev",
        user_id="u",
        quantity=1,
        reason=Reason.EXPIRED,
    )
    capture = PaymentCaptured(
        reservation_id="x",
        request_id="r4",
        event_id="ev",
        user_id="u",
        amount_cents=1,
        payment_id="p",
    )
    for data in (rejected, released, capture):
        await processor.handle(Envelope.new(data, source="t"))
    assert [(n.request_id, n.status, n.reason) for n in sink.sent] == [
        ("r2", Status.REJECTED, Reason.SOLD_OUT),
        ("r3", Status.FAILED, Reason.EXPIRED),
    ]
    # is_notified (the agent's shortcut for everything else) agrees with what is notified.
    envelopes = [Envelope.new(data, source="t") for data in (rejected, released, capture)]
    envelopes.append(_order("r5"))
    assert [is_notified(e) for e in envelopes] == [True, True, False, True]
    assert {type(e.data) for e in envelopes if is_notified(e)} == set(NOTIFIED_OUTCOMES)


async def test_sink_deduplicates_by_notification_id_after_a_lost_dedup_write() -> None:
    sink = SimulatedSink()
    first = NotificationProcessor({}, sink)
    await first.handle(_order())
    # A crash lost the dedup record: the sink still sends once (same notification id).
    second = NotificationProcessor({}, sink)
    await second.handle(_order())
    assert len(sink.sent) == 1


async def test_sink_memory_is_bounded_and_recent_ids_still_deduplicate() -> None:
    sink = SimulatedSink(remember=2, keep=2)
    processor = NotificationProcessor({}, sink)
    for request_id in ("r1", "r2", "r3"):
        await processor.handle(_order(request_id))
    assert [n.request_id for n in sink.sent] == ["r2", "r3"]
    redelivered = NotificationProcessor({}, sink)  # dedup records lost, as after a crash
    await redelivered.handle(_order("r3"))
    assert [n.request_id for n in sink.sent] == ["r2", "r3"]
    await redelivered.handle(_order("r1"))  # forgotten long ago: delivered again
    assert [n.request_id for n in sink.sent] == ["r3", "r1"]
