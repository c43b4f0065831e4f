"""HTTP views through aiohttp's test client: validation, routing to the owner, readiness."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import AsyncMock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.exceptions import SameNode

import eventpro.web.api as api
from eventpro.app import app
from eventpro.domain import EventInventory
from eventpro.schemas import EventCreated, TicketRequested
from eventpro.tables import ticketing


def _fresh_application() -> web.Application:
    """The app's routes on a new aiohttp application (a started one is frozen)."""
    application = web.Application()
    for route in app.web.web_app.router.routes():
        if route.method != "HEAD":
            application.router.add_route(route.method, route.resource.canonical, route.handler)
    return application


@pytest.fixture()
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    """A client of the app's aiohttp application; the API's producer and router are mocked."""
    app.loop = asyncio.get_running_loop()
    app.finalize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app.conf.store = "memory://"
    ticketing.inventory_table.data._clear()
    ticketing.request_status_table.data._clear()
    api._KNOWN_EVENTS.clear()
    monkeypatch.setattr(app.router, "route_req", AsyncMock(side_effect=SameNode()))
    recovered = asyncio.Event()
    recovered.set()  # a settled worker: tables recovered, not rebalancing
    monkeypatch.setattr(app.tables.recovery, "completed", recovered)
    async with TestClient(TestServer(_fresh_application())) as test_client:
        yield test_client


@pytest.fixture()
def produced(monkeypatch: pytest.MonkeyPatch) -> AsyncMock:
    """What the API would produce to ticket-requests."""
    mock = AsyncMock()
    monkeypatch.setattr(api, "_produce", mock)
    return mock


@pytest.fixture()
def events(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Events the owner lookup knows about (no broker, so no router)."""
    known: dict[str, dict[str, Any]] = {}

    async def lookup(event_id: str) -> dict[str, Any] | None:
        return known.get(event_id)

    monkeypatch.setattr(api, "lookup_event", lookup)
    return known


def _show(event_id: str = "ev1") -> dict[str, Any]:
    inventory = EventInventory(
        event_id=event_id, name="Show", capacity=10, price_cents=100, max_per_user=4
    )
    return inventory.to_dict()


async def test_invalid_json_is_400(client: TestClient, produced: AsyncMock) -> None:
    response = await client.post("/api/v1/ticket-requests", data=b"{nope")
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["error"]
    produced.assert_not_awaited()


async def test_missing_fields_are_named(client: TestClient, produced: AsyncMock) -> None:
    response = await client.post("/api/v1/ticket-requests", json={"event_id": "ev1"})
    assert response.status == 422
    body = await response.json()
    assert any(d.startswith("user_id:") for d in body["details"])
    assert any(d.startswith("quantity:") for d in body["details"])


@pytest.mark.parametrize("quantity", [0, -1, 10_000])
async def test_quantity_out_of_range_is_422(
    client: TestClient, produced: AsyncMock, events: dict[str, Any], quantity: int
) -> None:
    events["ev1"] = _show()
    body = {"event_id": "ev1", "user_id": "u1", "quantity": quantity}
    response = await client.post("/api/v1/ticket-requests", json=body)
    assert response.status == 422
    assert "quantity" in (await response.json())["error"]
    produced.assert_not_awaited()


async def test_unknown_event_is_422(
    client: TestClient, produced: AsyncMock, events: dict[str, Any]
) -> None:
    body = {"event_id": "ghost", "user_id": "u1", "quantity": 1}
    response = await client.post("/api/v1/ticket-requests", json=body)
    assert response.status == 422
    assert "ghost" in (await response.json())["error"]
    produced.assert_not_awaited()


async def test_valid_request_is_accepted(
    client: TestClient, produced: AsyncMock, events: dict[str, Any]
) -> None:
    events["ev1"] = _show()
    body = {"event_id": "ev1", "user_id": "u1", "quantity": 2, "request_id": "r-1"}
    response = await client.post("/api/v1/ticket-requests", json=body)
    assert response.status == 202
    answer = await response.json()
    assert answer["request_id"] == "r-1"
    assert answer["status_url"].endswith("/api/v1/events/ev1/requests/r-1")
    envelope, key = produced.await_args.args
    assert key == "ev1"
    assert isinstance(envelope.data, TicketRequested) and envelope.data.quantity == 2


async def test_request_id_is_assigned(
    client: TestClient, produced: AsyncMock, events: dict[str, Any]
) -> None:
    events["ev1"] = _show()
    body = {"event_id": "ev1", "user_id": "u1", "quantity": 1}
    response = await client.post("/api/v1/ticket-requests", json=body)
    assert response.status == 202
    assert (await response.json())["request_id"]


async def test_create_event(
    client: TestClient, produced: AsyncMock, events: dict[str, Any]
) -> None:
    async def owner_applies(envelope: Any, key: str) -> None:
        events[key] = {**envelope.data.model_dump(), "held": 0, "sold": 0, "available": 10}

    produced.side_effect = owner_applies
    body = {"name": "Show", "capacity": 10, "price_cents": 100, "event_id": "ev9"}
    response = await client.post("/api/v1/events", json=body)
    assert response.status == 201
    answer = await response.json()
    assert answer["event_id"] == "ev9" and answer["max_per_user"] >= 1
    assert answer["available"] == 10
    envelope, key = produced.await_args.args
    assert key == "ev9" and isinstance(envelope.data, EventCreated)


async def test_create_event_not_applied_in_time_is_202(
    client: TestClient,
    produced: AsyncMock,
    events: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api, "EVENT_APPLY_WAIT_SECONDS", 0.05)
    body = {"name": "Show", "capacity": 10, "price_cents": 100, "event_id": "ev8"}
    response = await client.post("/api/v1/events", json=body)
    assert response.status == 202
    assert (await response.json())["url"] == "/api/v1/events/ev8"
    produced.assert_awaited_once()


async def test_create_event_conflict_is_409(
    client: TestClient, produced: AsyncMock, events: dict[str, Any]
) -> None:
    events["ev1"] = _show()
    body = {"name": "Other", "capacity": 10, "price_cents": 100, "event_id": "ev1"}
    response = await client.post("/api/v1/events", json=body)
    assert response.status == 409
    produced.assert_not_awaited()


async def test_create_event_validation(client: TestClient, produced: AsyncMock) -> None:
    response = await client.post("/api/v1/events", json={"name": "x", "capacity": 0})
    assert response.status == 422
    details = (await response.json())["details"]
    assert any(d.startswith("capacity:") for d in details)
    assert any(d.startswith("price_cents:") for d in details)


async def test_event_and_status_reads(client: TestClient) -> None:
    missing = await client.get("/api/v1/events/nope")
    assert missing.status == 404
    unknown = await client.get("/api/v1/events/nope/requests/r1")
    assert unknown.status == 404
    assert (await unknown.json())["status"] == "unknown"
    assert app.router.route_req.await_count == 2


async def test_reads_during_a_rebalance_are_refused_not_answered_from_stale_tables(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that left the group still has its old assignment and frozen tables: it must
    neither answer from them nor forward by them."""
    monkeypatch.setattr(app, "rebalancing", True)
    for path in ("/api/v1/events/ev1", "/api/v1/events/ev1/requests/r1"):
        response = await client.get(path)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        body = await response.json()
        assert "rebalancing" in body["error"] and "'ev1'" in body["error"]
    assert app.router.route_req.await_count == 0


async def test_health_and_ready(client: TestClient) -> None:
    health = await client.get("/health")
    assert health.status == 200
    ready = await client.get("/ready")
    assert ready.status == 503
    assert (await ready.json())["reasons"]
