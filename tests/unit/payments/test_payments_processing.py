"""Payments processor and the payments agent's record handling: outcomes, ids, retries, DLQ."""

from __future__ import annotations

from typing import Any

import pytest
from support.stream_events import StreamEvent

from eventpro.agents import payments as payments_module
from eventpro.agents.output import decode_record
from eventpro.agents.processing import Outgoing
from eventpro.domain import Reason
from eventpro.payments import GatewayOptions, SimulatedGateway
from eventpro.payments.processor import PaymentsProcessor
from eventpro.retry import H_ATTEMPTS, H_TOPIC, RawOutgoing, RawRecord, route_failure
from eventpro.schemas import (
    DeadLetter,
    Envelope,
    PaymentCaptured,
    PaymentDeclined,
    RefundIssued,
    RefundRequested,
    RequestRejected,
    SeatsReserved,
    decode,
    encode,
)

FAST = GatewayOptions(latency_distribution="fixed", latency_ms_min=0.0)


def _reserved(user_id: str = "u1", reservation_id: str = "res-1") -> Envelope:
    data = SeatsReserved(
        reservation_id=reservation_id,
        request_id="req-1",
        event_id="ev-1",
        user_id=user_id,
        quantity=2,
        amount_cents=1000,
        expires_at_ms=10**13,
    )
    return Envelope.new(data, source="test", correlation_id="corr-1")


def _processor() -> PaymentsProcessor:
    return PaymentsProcessor(SimulatedGateway(FAST), timeout_seconds=1.0)


async def test_capture_carries_saga_ids_and_a_deterministic_envelope_id() -> None:
    processor = _processor()
    cause = _reserved()
    [out] = await processor.handle(cause)
    assert out.topic == "payments" and out.key == "ev-1"
    assert isinstance(out.envelope.data, PaymentCaptured)
    assert out.envelope.correlation_id == "corr-1"
    assert out.envelope.causation_id == cause.event_id
    # A redelivery (even with a new envelope id) re-emits the same event, charging nothing new.
    [again] = await processor.handle(_reserved())
    assert again.envelope.event_id == out.envelope.event_id
    assert again.envelope.data == out.envelope.data


async def test_decline_becomes_payment_declined() -> None:
    [out] = await _processor().handle(_reserved(user_id="decline-7"))
    assert isinstance(out.envelope.data, PaymentDeclined)
    assert out.envelope.data.code == "card_declined"


async def test_refund_request_becomes_refund_issued() -> None:
    processor = _processor()
    refund = RefundRequested(
        reservation_id="res-1",
        request_id="req-1",
        event_id="ev-1",
        amount_cents=1000,
        payment_id="pay-1",
    )
    [out] = await processor.handle(Envelope.new(refund, source="t", correlation_id="c"))
    assert isinstance(out.envelope.data, RefundIssued)
    assert out.envelope.data.amount_cents == 1000 and out.envelope.correlation_id == "c"


async def test_other_events_are_not_for_payments() -> None:
    rejected = RequestRejected(
        request_id="r", event_id="e", user_id="u", quantity=1, reason=Reason.SOLD_OUT
    )
    assert await _processor().handle(Envelope.new(rejected, source="t")) == []


def _raw(value: bytes, headers: dict[str, bytes] | None = None) -> RawRecord:
    return RawRecord("reservations", 2, 41, b"ev-1", value, headers or {})


def test_failures_walk_the_retry_topics_then_the_dlq() -> None:
    record = _raw(b"payload")
    delays = (100, 200, 300)
    seen = []
    for expected_topic, delay in zip(("retry-1", "retry-2", "retry-3"), delays, strict=True):
        routed = route_failure(record, "boom", agent="a", now_ms=1_000, delays_ms=delays)
        headers = dict(routed.headers)
        assert routed.topic == expected_topic
        assert (routed.key, routed.value) == (b"ev-1", b"payload")
        assert int(headers["eventpro-due-ms"]) == 1_000 + delay
        assert headers[H_TOPIC] == b"reservations"
        seen.append(routed.topic)
        record = RawRecord(routed.topic, 0, 7, routed.key, routed.value, headers)
    final = route_failure(record, "still down", agent="a", now_ms=2_000, correlation_id="c")
    assert final.topic == "dlq"
    letter = decode(final.value).data
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.attempts, letter.agent) == ("retries_exhausted", 4, "a")
    assert (letter.topic, letter.partition, letter.offset) == ("reservations", 2, 41)
    assert letter.original() == b"payload" and letter.original_key() == b"ev-1"
    assert letter.correlation_id == "c" and letter.error == "still down"


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    box: list[Any] = []

    async def fake_send(records: Any) -> None:
        box.extend(records)

    monkeypatch.setattr(payments_module, "send", fake_send)
    monkeypatch.setattr(payments_module, "send_raw", fake_send)
    monkeypatch.setattr(payments_module, "processor", _processor())
    return box


async def test_agent_routes_transient_failure_to_retry_1(sent: list[Any]) -> None:
    label = await payments_module.handle_record(_raw(encode(_reserved(user_id="transient-1"))))
    assert label == "retry-1"
    [routed] = sent
    assert isinstance(routed, RawOutgoing) and dict(routed.headers)[H_ATTEMPTS] == b"1"


async def test_agent_dead_letters_after_the_last_retry(sent: list[Any]) -> None:
    record = _raw(encode(_reserved(user_id="transient-1")), {H_ATTEMPTS: b"3"})
    assert await payments_module.handle_record(record) == "dlq"
    letter = decode(sent[0].value).data
    assert isinstance(letter, DeadLetter) and letter.attempts == 4
    assert letter.correlation_id == "corr-1"


async def test_agent_dead_letters_poison_records_at_once(sent: list[Any]) -> None:
    assert await payments_module.handle_record(_raw(b"{not json")) == "dlq"
    letter = decode(sent[0].value).data
    assert isinstance(letter, DeadLetter) and letter.reason == "invalid_json"
    assert letter.attempts == 1 and letter.original() == b"{not json"


async def test_agent_emits_capture(sent: list[Any]) -> None:
    assert await payments_module.handle_record(_raw(encode(_reserved()))) == "PaymentCaptured"
    assert isinstance(sent[0], Outgoing)


async def test_agent_orders_by_reservation_and_handles_the_record_it_decoded_once(
    sent: list[Any],
) -> None:
    record = _raw(encode(_reserved(reservation_id="res-7")))
    decoded = decode_record(record)
    assert payments_module._order_key(record, decoded) == "res-7"
    poison = _raw(b"{not json")
    assert payments_module._order_key(poison, decode_record(poison)) == (
        f"{poison.topic}/{poison.partition}"
    )
    assert await payments_module.handle_record(record, decoded) == "PaymentCaptured"
    assert await payments_module.handle_record(poison, decode_record(poison)) == "dlq"


async def test_records_payments_ignores_are_acked_without_a_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pooled: list[str] = []

    async def pool(key: str, work: Any) -> None:
        pooled.append(key)

    monkeypatch.setattr(payments_module.inflight, "submit", pool)
    rejected = RequestRejected(
        request_id="r", event_id="e", user_id="u", quantity=1, reason=Reason.SOLD_OUT
    )
    ignored = StreamEvent(encode(Envelope.new(rejected, source="t")))
    charged = StreamEvent(encode(_reserved()))
    await payments_module.submit(ignored)  # type: ignore[arg-type]
    await payments_module.submit(charged)  # type: ignore[arg-type]
    assert (ignored.acks, charged.acks) == (1, 0)
    assert pooled == ["res-1"]
    assert not PaymentsProcessor.handles(Envelope.new(rejected, source="t"))
    assert PaymentsProcessor.handles(_reserved())
