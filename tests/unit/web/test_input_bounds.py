"""``POST /api/v1/ticket-requests`` input bounds: body size, quantity, per-user rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import AsyncMock

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import eventpro.web.api as api
from eventpro.web.ratelimit import TokenBucketLimiter

PATH = "/api/v1/ticket-requests"
MAX_BODY = api._settings.max_body_bytes


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    """The ticket-requests view alone; event ``ev1`` exists, producing is mocked."""
    monkeypatch.setattr(api, "lookup_event", AsyncMock(return_value={"event_id": "ev1"}))
    monkeypatch.setattr(api, "_produce", AsyncMock())
    monkeypatch.setattr(api, "_KNOWN_EVENTS", set())
    monkeypatch.setattr(api, "_rate_limiter", None)
    application = web.Application()
    for route in api.app.web.web_app.router.routes():
        if route.method == "POST" and route.resource.canonical == PATH:
            application.router.add_route("POST", PATH, route.handler)
    async with TestClient(TestServer(application)) as test_client:
        yield test_client


def _request(user: str = "alice", quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"event_id": "ev1", "user_id": user, "quantity": quantity, **extra}


async def test_body_over_the_limit_is_413_without_producing(client: TestClient) -> None:
    body = orjson.dumps(_request(padding="x" * MAX_BODY))
    response = await client.post(PATH, data=body)
    assert response.status == 413
    assert "EVENTPRO_MAX_BODY_BYTES" in (await response.json())["error"]
    api._produce.assert_not_awaited()


async def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"event_id": "ev1", "user_id": "alice", "quantity": 1, "pad": "'
        for _ in range(MAX_BODY // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post(PATH, data=chunks())
    assert response.status == 413
    api._produce.assert_not_awaited()


async def test_body_just_under_the_limit_is_accepted(client: TestClient) -> None:
    small = orjson.dumps(_request(padding=""))
    body = orjson.dumps(_request(padding="x" * (MAX_BODY - len(small))))
    assert len(body) == MAX_BODY
    response = await client.post(PATH, data=body)
    assert response.status == 202
    api._produce.assert_awaited_once()


@pytest.mark.parametrize("quantity", [0, -3, api._settings.max_quantity + 1, 2**63])
async def test_quantity_out_of_bounds_is_422(client: TestClient, quantity: int) -> None:
    response = await client.post(PATH, data=orjson.dumps(_request(quantity=quantity)))
    assert response.status == 422
    assert "quantity" in (await response.json())["error"]
    api._produce.assert_not_awaited()


async def test_quantity_at_the_bound_is_accepted(client: TestClient) -> None:
    body = _request(quantity=api._settings.max_quantity)
    response = await client.post(PATH, json=body)
    assert response.status == 202


@pytest.mark.parametrize(
    "field",
    [{"user_id": "u" * 129}, {"user_id": "a b"}, {"event_id": ""}, {"request_id": "x/y"}],
)
async def test_oversized_or_malformed_ids_are_422(
    client: TestClient, field: dict[str, str]
) -> None:
    response = await client.post(PATH, json={**_request(), **field})
    assert response.status == 422
    api._produce.assert_not_awaited()


async def test_rate_limit_per_user_is_429_with_retry_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(api, "_rate_limiter", TokenBucketLimiter(0.5, 2, clock=clock))
    answers = [(await client.post(PATH, json=_request("alice"))).status for _ in range(2)]
    assert answers == [202, 202]
    refused = await client.post(PATH, json=_request("alice"))
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"
    body = await refused.json()
    assert "alice" in body["error"] and body["retry_after_seconds"] == pytest.approx(2.0)
    other = await client.post(PATH, json=_request("bob"))
    assert other.status == 202
    assert api._produce.await_count == 3
    clock.now += 2.0
    again = await client.post(PATH, json=_request("alice"))
    assert again.status == 202
