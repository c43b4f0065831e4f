"""Codec: round trips, upcasting v1 -> v2, unknown fields, and SchemaError for bad input."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from eventpro.domain import Hold, Reason, RequestStatus, Status
from eventpro.exceptions import EventProError
from eventpro.schemas import (
    EVENT_MODELS,
    DeadLetter,
    Envelope,
    EventCreated,
    EventData,
    HoldExpiryTick,
    NotificationSent,
    OrderConfirmed,
    PaymentCaptured,
    PaymentDeclined,
    RefundIssued,
    RefundRequested,
    RequestRejected,
    SchemaError,
    SchemaErrorReason,
    SeatsReleased,
    SeatsReserved,
    TicketRequested,
    decode,
    encode,
)

WHEN = datetime(2025, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
HOLD = Hold("res-1", "req-1", "ev-1", "u-1", 2, 3000, 99)

SAMPLES: list[EventData] = [
    EventCreated(event_id="ev-1", name="Concert", capacity=10, price_cents=1500, max_per_user=4),
    TicketRequested(request_id="req-1", event_id="ev-1", user_id="u-1", quantity=2),
    SeatsReserved.from_hold(HOLD),
    RequestRejected(
        request_id="req-1", event_id="ev-1", user_id="u-1", quantity=2, reason=Reason.SOLD_OUT
    ),
    PaymentCaptured.from_hold(HOLD, "pay-1"),
    PaymentDeclined.from_hold(HOLD, code="insufficient_funds"),
    OrderConfirmed(
        reservation_id="res-1",
        request_id="req-1",
        event_id="ev-1",
        user_id="u-1",
        quantity=2,
        amount_cents=3000,
        ticket_ids=("t1", "t2"),
    ),
    SeatsReleased(
        reservation_id="res-1",
        request_id="req-1",
        event_id="ev-1",
        user_id="u-1",
        quantity=2,
        reason=Reason.EXPIRED,
    ),
    RefundRequested(
        reservation_id="res-1", request_id="req-1", event_id="ev-1", amount_cents=1, payment_id="p"
    ),
    RefundIssued(
        reservation_id="res-1",
        request_id="req-1",
        event_id="ev-1",
        amount_cents=1,
        payment_id="p",
        refund_id="rf",
    ),
    HoldExpiryTick(partition=3, now_ms=123),
    NotificationSent(
        notification_id="n1",
        request_id="req-1",
        event_id="ev-1",
        user_id="u-1",
        channel="email",
        status=Status.CONFIRMED,
        ticket_ids=("t1",),
    ),
    DeadLetter.from_record(
        reason="invalid_json",
        error="boom",
        attempts=1,
        agent="inventory",
        topic="ticket-requests",
        partition=2,
        offset=41,
        key=b"ev-1",
        value=b"\xff\x00garbage",
        correlation_id=None,
    ),
]


def envelope_of(data: EventData) -> Envelope:
    return Envelope.new(data, source="test", event_id="msg-1", occurred_at=WHEN)


def raw(event_type: str, version: int, data: object, **header: object) -> bytes:
    return orjson.dumps(
        {
            "event_type": event_type,
            "schema_version": version,
            "event_id": "msg-1",
            "occurred_at": "2025-05-01T12:00:00Z",
            "source": "legacy-app",
            "data": data,
            **header,
        }
    )


def test_samples_cover_every_event_type() -> None:
    assert {type(s) for s in SAMPLES} == set(EVENT_MODELS)


@pytest.mark.parametrize("data", SAMPLES, ids=lambda d: d.EVENT_TYPE)
def test_round_trip(data: EventData) -> None:
    envelope = envelope_of(data)
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert type(decoded.data) is type(data)


def test_encoded_envelope_shape_is_the_documented_one() -> None:
    data = SAMPLES[1]
    obj = orjson.loads(encode(envelope_of(data)))
    assert obj == {
        "event_type": "TicketRequested",
        "schema_version": 2,
        "event_id": "msg-1",
        "occurred_at": "2025-05-01T12:00:00.123000Z",
        "source": "test",
        "correlation_id": "msg-1",
        "causation_id": None,
        "data": {"request_id": "req-1", "event_id": "ev-1", "user_id": "u-1", "quantity": 2},
    }


def test_enums_are_encoded_as_strings() -> None:
    obj = orjson.loads(encode(envelope_of(SAMPLES[3])))
    assert obj["data"]["reason"] == "sold_out"


def test_v1_ticket_request_is_upcast_to_v2() -> None:
    env = decode(raw("TicketRequested", 1, {"event": "ev-1", "user": "u-1", "qty": 3}))
    assert env.schema_version == 2
    assert env.data == TicketRequested(
        request_id="msg-1", event_id="ev-1", user_id="u-1", quantity=3
    )


def test_v1_ticket_request_keeps_its_request_id() -> None:
    data = {"event": "ev-1", "user": "u-1", "qty": 1, "request_id": "r-9"}
    env = decode(raw("TicketRequested", 1, data))
    assert env.data_as(TicketRequested).request_id == "r-9"


def test_v1_and_v2_of_the_same_request_give_the_same_command() -> None:
    v1 = decode(raw("TicketRequested", 1, {"event": "e", "user": "u", "qty": 2, "request_id": "r"}))
    v2 = decode(
        raw(
            "TicketRequested",
            2,
            {"event_id": "e", "user_id": "u", "quantity": 2, "request_id": "r"},
        )
    )
    assert v1.data == v2.data


def test_bad_v1_payload_is_a_validation_error() -> None:
    with pytest.raises(SchemaError, match=r"data\.qty") as info:
        decode(raw("TicketRequested", 1, {"event": "ev-1", "user": "u-1"}))
    assert info.value.reason is SchemaErrorReason.VALIDATION_ERROR


def test_unknown_fields_are_ignored() -> None:
    data = {"request_id": "r", "event_id": "e", "user_id": "u", "quantity": 1, "seat": "A1"}
    env = decode(raw("TicketRequested", 2, data, trace={"x": 1}))
    assert env.data == TicketRequested(request_id="r", event_id="e", user_id="u", quantity=1)


def test_missing_correlation_defaults_to_event_id() -> None:
    data = {"request_id": "r", "event_id": "e", "user_id": "u", "quantity": 1}
    assert decode(raw("TicketRequested", 2, data)).correlation_id == "msg-1"


def test_caused_carries_correlation_and_sets_causation() -> None:
    parent = Envelope.new(SAMPLES[1], source="app", correlation_id="corr-1")
    child = parent.caused(SAMPLES[2], source="eventpro.inventory")
    assert child.correlation_id == "corr-1"
    assert child.causation_id == parent.event_id
    assert child.event_id != parent.event_id
    assert (child.event_type, child.source) == ("SeatsReserved", "eventpro.inventory")


def test_new_without_correlation_starts_a_saga() -> None:
    env = Envelope.new(SAMPLES[0], source="x")
    assert env.correlation_id == env.event_id
    assert env.causation_id is None


def test_data_as_rejects_another_type() -> None:
    with pytest.raises(SchemaError, match="expected SeatsReserved"):
        envelope_of(SAMPLES[1]).data_as(SeatsReserved)


def test_dead_letter_keeps_original_bytes() -> None:
    letter = decode(encode(envelope_of(SAMPLES[-1]))).data_as(DeadLetter)
    assert letter.original() == b"\xff\x00garbage"
    assert letter.original_key() == b"ev-1"
    assert letter.original_b64 == base64.b64encode(b"\xff\x00garbage").decode()
    assert letter.partition_key is None


def test_partition_key_is_the_event_id() -> None:
    assert SAMPLES[1].partition_key == "ev-1"
    assert HoldExpiryTick(partition=0, now_ms=1).partition_key is None


def test_domain_converters_round_trip() -> None:
    assert SeatsReserved.from_hold(HOLD).to_hold() == HOLD
    status = RequestStatus("req-1", "ev-1", "u-1", 2, Status.FAILED, Reason.EXPIRED, "res-1")
    assert SeatsReleased.from_status(status).reason is Reason.EXPIRED
    confirmed = RequestStatus("req-1", "ev-1", "u-1", 2, Status.CONFIRMED, ticket_ids=("a", "b"))
    assert OrderConfirmed.from_hold(HOLD, confirmed).ticket_ids == ("a", "b")
    payment = PaymentCaptured.from_hold(HOLD, "pay-1").to_payment()
    assert (payment.reservation_id, payment.amount_cents) == ("res-1", 3000)
    command = SAMPLES[1].to_command("corr")
    assert (command.request_id, command.quantity, command.correlation_id) == ("req-1", 2, "corr")
    assert SAMPLES[0].to_command().capacity == 10


def test_rejection_and_release_reasons_are_checked() -> None:
    with pytest.raises(ValueError, match="not a rejection reason"):
        RequestRejected(
            request_id="r", event_id="e", user_id="u", quantity=1, reason=Reason.EXPIRED
        )
    with pytest.raises(ValueError, match="not a release reason"):
        SeatsReleased(
            reservation_id="x",
            request_id="r",
            event_id="e",
            user_id="u",
            quantity=1,
            reason=Reason.SOLD_OUT,
        )


def test_models_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        SAMPLES[1].quantity = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("payload", "reason", "match"),
    [
        (b"\x00\xffnot json", SchemaErrorReason.INVALID_JSON, "invalid_json"),
        (b"", SchemaErrorReason.INVALID_JSON, "invalid_json"),
        (b"[1, 2]", SchemaErrorReason.NOT_AN_ENVELOPE, "got list"),
        (raw("Nope", 1, {}), SchemaErrorReason.UNKNOWN_EVENT_TYPE, "'Nope'"),
        (orjson.dumps({"data": {}}), SchemaErrorReason.UNKNOWN_EVENT_TYPE, "None"),
        (raw("TicketRequested", 3, {}), SchemaErrorReason.UNSUPPORTED_SCHEMA_VERSION, "1..2"),
        (raw("TicketRequested", 0, {}), SchemaErrorReason.UNSUPPORTED_SCHEMA_VERSION, "0"),
        (raw("TicketRequested", "2", {}), SchemaErrorReason.UNSUPPORTED_SCHEMA_VERSION, "'2'"),
        (raw("TicketRequested", 2, [1]), SchemaErrorReason.VALIDATION_ERROR, "expected an object"),
        (
            raw("TicketRequested", 2, {"event_id": "e", "user_id": "u", "quantity": "x"}),
            SchemaErrorReason.VALIDATION_ERROR,
            r"data\.request_id: Field required; data\.quantity",
        ),
        (
            raw(
                "TicketRequested",
                2,
                {"request_id": "a/b", "event_id": "e", "user_id": "u", "quantity": 1},
            ),
            SchemaErrorReason.VALIDATION_ERROR,
            "data.request_id",
        ),
        (
            raw(
                "EventCreated",
                1,
                {"event_id": "e", "name": "x", "capacity": 0, "price_cents": 1, "max_per_user": 1},
            ),
            SchemaErrorReason.VALIDATION_ERROR,
            "data.capacity",
        ),
        (
            raw("HoldExpiryTick", 1, {"partition": 0, "now_ms": 1}, occurred_at="yesterday"),
            SchemaErrorReason.VALIDATION_ERROR,
            "occurred_at",
        ),
        (
            raw("HoldExpiryTick", 1, {"partition": 0, "now_ms": 1}, event_id=""),
            SchemaErrorReason.VALIDATION_ERROR,
            "event_id",
        ),
    ],
)
def test_unreadable_records_raise_schema_error(
    payload: bytes, reason: SchemaErrorReason, match: str
) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        decode(payload)
    assert info.value.reason is reason
    assert isinstance(info.value, EventProError)


def test_a_value_decoded_again_gives_the_same_envelope_without_parsing_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eventpro.schemas import codec

    raw = encode(Envelope.new(SAMPLES[2], source="test"))
    first = decode(raw)
    monkeypatch.setattr(codec.orjson, "loads", _never_called)
    again = decode(bytes(bytearray(raw)))  # equal value, another object (another agent's copy)
    assert again is first
    with pytest.raises(AssertionError, match="parsed again"):
        decode(bytearray(raw))  # not bytes: not remembered


def test_an_unreadable_value_is_not_remembered() -> None:
    raw = b'{"event_type": "NoSuchEvent"}'
    for _ in range(2):
        with pytest.raises(SchemaError) as caught:
            decode(raw)
        assert caught.value.reason is SchemaErrorReason.UNKNOWN_EVENT_TYPE


def test_the_decode_memory_keeps_only_the_most_recent_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eventpro.schemas import codec

    monkeypatch.setattr(codec, "RECENT_DECODES", 3)
    monkeypatch.setattr(codec, "_recent", {})
    values = [encode(Envelope.new(SAMPLES[1], source=f"test-{i}")) for i in range(5)]
    envelopes = [decode(value) for value in values]
    assert list(codec._recent) == values[2:]
    assert decode(values[4]) is envelopes[4]
    refreshed = decode(values[0])  # forgotten: parsed again, equal but new
    assert refreshed == envelopes[0] and refreshed is not envelopes[0]


def _never_called(raw: object) -> object:
    raise AssertionError("parsed again")
