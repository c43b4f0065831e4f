"""The notifications agent's own logic: the order key of its in-flight pool and when it acks."""

from __future__ import annotations

from typing import Any

import pytest
from support.stream_events import StreamEvent

from eventpro.agents import notifications, output
from eventpro.agents.output import decode_record
from eventpro.domain import Reason
from eventpro.retry import RawOutgoing, RawRecord
from eventpro.schemas import (
    Envelope,
    RequestRejected,
    SchemaError,
    SeatsReleased,
    SeatsReserved,
    encode,
)


class FakeEvent:
    """Counts acknowledgements."""

    def __init__(self) -> None:
        self.acks = 0

    def ack(self) -> None:
        self.acks += 1


def _record(envelope: Envelope | None, topic: str = "reservations") -> RawRecord:
    value = b"not json" if envelope is None else encode(envelope)
    return RawRecord(topic=topic, partition=2, offset=7, key=b"ev", value=value)


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


def test_outcomes_of_one_request_share_an_order_key_and_other_requests_do_not() -> None:
    def key(envelope: Envelope) -> str:
        record = _record(envelope)
        return notifications._order_key(record, decode_record(record))

    assert key(_rejected("r1")) == key(_released("r1"))
    assert key(_rejected("r1")) != key(_rejected("r2"))


def test_an_unreadable_record_is_ordered_by_its_partition() -> None:
    record = _record(None)
    decoded = decode_record(record)

    assert isinstance(decoded, SchemaError)
    assert notifications._order_key(record, decoded) == "reservations/2"


async def test_a_record_is_acked_only_after_its_notification_was_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = FakeEvent()
    acks_when_sent: list[int] = []

    async def send(records: Any) -> None:
        acks_when_sent.append(event.acks)

    async def handle(envelope: Envelope) -> list[Any]:
        return [object()]

    monkeypatch.setattr(notifications, "send", send)
    monkeypatch.setattr(notifications.processor, "handle", handle)
    record = _record(_rejected("r1"))

    await notifications._process(event, record, decode_record(record))  # type: ignore[arg-type]

    assert acks_when_sent == [0]
    assert event.acks == 1


async def test_a_failed_record_is_acked_once_dead_lettered_and_never_if_that_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    letters: list[RawOutgoing] = []
    dlq_up = True

    async def broken(envelope: Envelope) -> list[Any]:
        raise RuntimeError("bug")

    async def send_raw(records: list[RawOutgoing]) -> None:
        if not dlq_up:
            raise ConnectionError("broker gone")
        letters.extend(records)

    monkeypatch.setattr(notifications.processor, "handle", broken)
    monkeypatch.setattr(output, "send_raw", send_raw)
    record = _record(_rejected("r1"))

    parked = FakeEvent()
    await notifications._process(parked, record, decode_record(record))  # type: ignore[arg-type]
    dlq_up = False
    redelivered = FakeEvent()
    await notifications._process(redelivered, record, decode_record(record))  # type: ignore[arg-type]

    assert [letter.topic for letter in letters] == ["dlq"]
    assert parked.acks == 1
    assert redelivered.acks == 0


async def test_records_that_are_not_terminal_outcomes_are_acked_without_a_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pooled: list[str] = []

    async def pool(key: str, work: Any) -> None:
        pooled.append(key)

    monkeypatch.setattr(notifications.inflight, "submit", pool)
    reserved = SeatsReserved(
        reservation_id="res",
        request_id="r1",
        event_id="ev",
        user_id="u",
        quantity=1,
        amount_cents=100,
        expires_at_ms=1,
    )
    skipped = StreamEvent(encode(Envelope.new(reserved, source="t")))
    outcome = StreamEvent(encode(_rejected("r2")))
    await notifications.submit(skipped)  # type: ignore[arg-type]
    await notifications.submit(outcome)  # type: ignore[arg-type]
    assert (skipped.acks, outcome.acks) == (1, 0)
    assert pooled == ["ev/r2"]
