"""TicketClient against an injected fake producer: topic, key, envelope, lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from eventpro.client import TicketClient
from eventpro.domain import InvalidRequest
from eventpro.schemas import EventCreated, TicketRequested, decode


class FakeProducer:
    """Records what would be sent; mimics aiokafka's producer surface."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.started = 0
        self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> object:
        await asyncio.sleep(0)
        self.sent.append((topic, key, value))
        return None


async def test_request_tickets_sends_keyed_envelope() -> None:
    producer = FakeProducer()
    async with TicketClient(
        "kafka://127.0.0.1:9092", topic_prefix="p-", source="shop", producer=producer
    ) as client:
        request_id = await client.request_tickets("ev-1", "user-1", 2, correlation_id="c-1")
    assert (producer.started, producer.stopped) == (1, 1)
    [(topic, key, value)] = producer.sent
    assert topic == "p-ticket-requests"
    assert key == b"ev-1"
    envelope = decode(value or b"")
    assert envelope.source == "shop"
    assert envelope.correlation_id == "c-1"
    assert envelope.schema_version == 2
    assert envelope.data == TicketRequested(
        request_id=request_id, event_id="ev-1", user_id="user-1", quantity=2
    )


async def test_request_id_is_kept_when_given() -> None:
    producer = FakeProducer()
    async with TicketClient("127.0.0.1:9092", producer=producer) as client:
        first = await client.request_tickets("ev-1", "u", 1, request_id="r-1")
        second = await client.request_tickets("ev-1", "u", 1, request_id="r-1")
        fresh = await client.request_tickets("ev-1", "u", 1)
    assert first == second == "r-1"
    assert fresh != "r-1"
    ids = [decode(v or b"").data_as(TicketRequested).request_id for _, _, v in producer.sent]
    assert ids == ["r-1", "r-1", fresh]
    envelope_ids = {decode(v or b"").event_id for _, _, v in producer.sent}
    assert len(envelope_ids) == 3


async def test_create_event_sends_catalog_command_on_requests_topic() -> None:
    producer = FakeProducer()
    async with TicketClient("127.0.0.1:9092", producer=producer) as client:
        event_id = await client.create_event("Show", 100, 2500, max_per_user=3)
    [(topic, key, value)] = producer.sent
    assert topic == "ticket-requests"
    assert key == event_id.encode()
    assert decode(value or b"").data == EventCreated(
        event_id=event_id, name="Show", capacity=100, price_cents=2500, max_per_user=3
    )


async def test_invalid_input_is_refused_before_sending() -> None:
    producer = FakeProducer()
    async with TicketClient("127.0.0.1:9092", producer=producer) as client:
        with pytest.raises(InvalidRequest, match="event_id"):
            await client.request_tickets("bad/id", "u", 1)
        with pytest.raises(InvalidRequest, match="capacity"):
            await client.create_event("Show", 0, 100)
    assert producer.sent == []


async def test_out_of_range_quantity_is_sent_for_the_inventory_to_reject() -> None:
    producer = FakeProducer()
    async with TicketClient("127.0.0.1:9092", producer=producer) as client:
        await client.request_tickets("ev-1", "u", 0)
    assert decode(producer.sent[0][2] or b"").data_as(TicketRequested).quantity == 0


async def test_sending_before_start_fails_clearly() -> None:
    client = TicketClient("127.0.0.1:9092", producer=FakeProducer())
    with pytest.raises(RuntimeError, match="async with"):
        await client.request_tickets("ev-1", "u", 1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://127.0.0.1:1,127.0.0.1:2", "127.0.0.1:1,127.0.0.1:2"),
        ("kafka://127.0.0.1:1;kafka://127.0.0.1:2", "127.0.0.1:1,127.0.0.1:2"),
    ],
)
def test_bootstrap_url_forms(url: str, expected: str) -> None:
    assert TicketClient(url).bootstrap == expected


async def test_default_producer_is_durable_and_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[dict[str, object]] = []

    def factory(**kwargs: object) -> FakeProducer:
        created.append(kwargs)
        return FakeProducer()

    monkeypatch.setattr("eventpro.client.AIOKafkaProducer", factory)
    async with TicketClient("kafka://127.0.0.1:9092", source="shop") as client:
        await client.request_tickets("ev-1", "u", 1)
    [kwargs] = created
    assert kwargs["bootstrap_servers"] == "127.0.0.1:9092"
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is True
    assert kwargs["linger_ms"] == 5
