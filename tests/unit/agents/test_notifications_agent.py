"""The notifications agent: a batch at a time, one notification per request, acks withheld
when its output cannot be sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.stream_events import StreamEvent

from eventpro.agents import notifications
from eventpro.agents.notifications import notifications_agent, notifications_table
from eventpro.domain import Reason, request_key
from eventpro.notify import Notification
from eventpro.retry import RawOutgoing
from eventpro.schemas import (
    DeadLetter,
    Envelope,
    NotificationSent,
    OrderConfirmed,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
    decode,
    encode,
)


class RecordingSink:
    """Delivers every notification it is given, except for the requests told to fail."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.failing: set[str] = set()

    async def send(self, notification: Notification) -> None:
        if notification.request_id in self.failing:
            raise ConnectionError("provider down")
        self.sent.append(notification)


@pytest.fixture()
def sink(faust_app: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingSink]:
    """A recording sink, an empty dedup table, and no broker: no topic creation, and no
    acknowledgement to wait for."""

    async def no_declare() -> None:
        return None

    async def no_wait(futures: Any) -> None:
        return None

    monkeypatch.setattr(notifications, "declare_topics", no_declare)
    monkeypatch.setattr(notifications, "persisted", no_wait)
    notifications_table.data._clear()
    recording = RecordingSink()
    monkeypatch.setattr(notifications.processor, "sink", recording)
    yield recording


@pytest.fixture()
def withheld(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records the agent keeps from being committed."""
    kept: list[Any] = []
    monkeypatch.setattr(notifications, "withhold_acks", kept.extend)
    return kept


def _rejected(request_id: str) -> Envelope:
    data = RequestRejected(
        request_id=request_id, event_id="ev", user_id="u", quantity=1, reason=Reason.SOLD_OUT
    )
    return Envelope.new(data, source="test")


def _released(request_id: str) -> Envelope:
    data = SeatsReleased(
        reservation_id="res",
        request_id=request_id,
        event_id="ev",
        user_id="u",
        quantity=1,
        reason=Reason.EXPIRED,
    )
    return Envelope.new(data, source="test")


def _confirmed(request_id: str) -> Envelope:
    data = OrderConfirmed(
        reservation_id="res",
        request_id=request_id,
        event_id="ev",
        user_id="u",
        quantity=1,
        amount_cents=500,
        ticket_ids=("t1",),
    )
    return Envelope.new(data, source="test")


def _reserved(request_id: str) -> Envelope:
    data = SeatsReserved(
        reservation_id="res",
        request_id=request_id,
        event_id="ev",
        user_id="u",
        quantity=1,
        amount_cents=100,
        expires_at_ms=1,
    )
    return Envelope.new(data, source="test")


async def test_each_request_is_notified_once_across_duplicates_and_batches(
    sink: RecordingSink, outbox: Any
) -> None:
    """The real agent over memory tables: outcomes, redeliveries and non-outcomes mixed."""
    async with notifications_agent.test_context() as agent:
        for envelope in (_rejected("r1"), _reserved("r2"), _confirmed("r2"), _rejected("r1")):
            await agent.put(encode(envelope), key=b"ev", partition=0)
        await agent.put(encode(_released("r3")), key=b"ev", partition=0)
        await agent.put(encode(_released("r2")), key=b"ev", partition=0)  # r2 ended already

    assert [n.request_id for n in sink.sent] == ["r1", "r2", "r3"]
    records = [r.envelope.data for r in outbox.on("notifications")]
    assert all(isinstance(r, NotificationSent) for r in records)
    assert [r.notification_id for r in records] == [n.notification_id for n in sink.sent]
    assert sorted(notifications_table.data.keys()) == [
        request_key("ev", r) for r in ("r1", "r2", "r3")
    ]


async def test_two_outcomes_of_one_request_in_one_batch_notify_once(
    sink: RecordingSink, outbox: Any
) -> None:
    events = [StreamEvent(encode(_rejected("r1"))), StreamEvent(encode(_released("r1")))]
    labels = await notifications.notify_batch(events)  # type: ignore[arg-type]
    assert labels == {"notified": 1, "ignored": 1}
    assert [n.status.value for n in sink.sent] == ["rejected"]
    assert len(outbox.on("notifications")) == 1


async def test_a_failing_sink_dead_letters_the_record_and_does_not_record_it(
    sink: RecordingSink, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters: list[RawOutgoing] = []

    async def send_raw(records: list[RawOutgoing]) -> None:
        letters.extend(records)

    monkeypatch.setattr(notifications, "send_raw", send_raw)
    sink.failing.add("r2")
    events = [StreamEvent(encode(_rejected(r))) for r in ("r1", "r2")]
    labels = await notifications.notify_batch(events)  # type: ignore[arg-type]

    assert labels == {"notified": 1, "dlq": 1}
    assert [n.request_id for n in sink.sent] == ["r1"]
    assert list(notifications_table.data.keys()) == [request_key("ev", "r1")]
    [letter] = letters
    dead = decode(letter.value).data
    assert isinstance(dead, DeadLetter) and dead.reason == "unexpected_error"
    assert "provider down" in dead.error


async def test_a_record_whose_dead_letter_cannot_be_sent_is_withheld(
    sink: RecordingSink, outbox: Any, withheld: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broker_gone(records: list[RawOutgoing]) -> None:
        raise ConnectionError("broker gone")

    monkeypatch.setattr(notifications, "send_raw", broker_gone)
    sink.failing.add("r2")
    ok, failing = StreamEvent(encode(_rejected("r1"))), StreamEvent(encode(_rejected("r2")))
    labels = await notifications.notify_batch([ok, failing])  # type: ignore[list-item]

    assert labels == {"notified": 1, "error": 1}
    assert withheld == [failing]


async def test_unreadable_orders_are_dead_lettered_and_unreadable_reservations_skipped(
    sink: RecordingSink, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters: list[RawOutgoing] = []

    async def send_raw(records: list[RawOutgoing]) -> None:
        letters.extend(records)

    monkeypatch.setattr(notifications, "send_raw", send_raw)
    orders = notifications.orders_topic.get_topic_name()
    events = [StreamEvent(b"{not json", topic=orders), StreamEvent(b"{not json")]
    labels = await notifications.notify_batch(events)  # type: ignore[arg-type]

    assert labels == {"dlq": 1, "skipped": 1}
    [letter] = letters
    dead = decode(letter.value).data
    assert isinstance(dead, DeadLetter) and dead.topic == orders


async def test_a_batch_whose_records_cannot_be_sent_is_withheld_whole(
    sink: RecordingSink, outbox: Any, withheld: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notifications went out, but their dedup keys may not have: the whole batch is
    read again and the sink deduplicates by notification_id."""

    async def broker_gone(self: Any) -> list[Any]:
        raise ConnectionError("broker gone")

    monkeypatch.setattr(notifications.Outbox, "send", broker_gone)
    events = [StreamEvent(encode(_rejected(r))) for r in ("r1", "r2")]
    labels = await notifications.notify_batch(events)  # type: ignore[arg-type]

    assert labels == {"error": 2}
    assert withheld == events
