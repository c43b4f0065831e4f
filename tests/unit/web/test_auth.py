"""The organiser token: policy rules, and the HTTP answers of a guarded endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from unittest.mock import AsyncMock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import eventpro.web.api as api
import eventpro.web.auth as auth
from eventpro.security import SecurityConfigError
from eventpro.settings import Settings
from eventpro.web.auth import AdminPolicy, is_loopback

TOKEN = "s3cret-organiser-token-0123456789"
EVENT = {"name": "Show", "capacity": 10, "price_cents": 100, "event_id": "ev-auth"}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("worker-1", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_no_token_on_loopback_is_open() -> None:
    policy = AdminPolicy.from_settings(Settings(web_host="127.0.0.1"))
    assert policy.open_without_token
    assert policy.check(None) is None


def test_no_token_on_public_bind_refuses_with_instructions() -> None:
    policy = AdminPolicy.from_settings(Settings(web_host="0.0.0.0"))
    denial = policy.check(f"Bearer {TOKEN}")
    assert denial is not None and denial.status == 403
    assert "EVENTPRO_ADMIN_TOKEN is not set" in denial.message


def test_token_is_required_even_on_loopback() -> None:
    policy = AdminPolicy(token=TOKEN, bind_host="127.0.0.1")
    missing = policy.check(None)
    assert missing is not None and missing.status == 401
    assert dict(missing.headers)["WWW-Authenticate"].startswith("Bearer")
    wrong = policy.check("Bearer " + "x" * len(TOKEN))
    assert wrong is not None and wrong.status == 403
    basic = policy.check(f"Basic {TOKEN}")
    assert basic is not None and basic.status == 401
    assert policy.check(f"Bearer {TOKEN}") is None
    assert policy.check(f"bearer   {TOKEN}  ") is None


def test_token_from_file_strips_newline(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n", encoding="utf-8")
    policy = AdminPolicy.from_settings(Settings(admin_token_file=str(secret)))
    assert policy.token == TOKEN
    assert TOKEN not in repr(policy)


def test_short_token_is_refused() -> None:
    with pytest.raises(SecurityConfigError, match="at least 16"):
        AdminPolicy.from_settings(Settings(admin_token="short"))


def test_token_and_file_together_is_ambiguous(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN, encoding="utf-8")
    with pytest.raises(SecurityConfigError, match="keep only one"):
        AdminPolicy.from_settings(Settings(admin_token=TOKEN, admin_token_file=str(secret)))


def test_unreadable_token_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SecurityConfigError, match="EVENTPRO_ADMIN_TOKEN_FILE"):
        AdminPolicy.from_settings(Settings(admin_token_file=str(tmp_path / "missing")))


def test_token_is_not_in_settings_repr() -> None:
    assert TOKEN not in repr(Settings(admin_token=TOKEN))


@pytest.fixture()
async def events_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    """``POST /api/v1/events`` alone on an aiohttp app, with lookups and producing mocked."""
    monkeypatch.setattr(api, "lookup_event", AsyncMock(return_value=None))
    monkeypatch.setattr(api, "_produce", AsyncMock())
    monkeypatch.setattr(api, "EVENT_APPLY_WAIT_SECONDS", 0.0)
    application = web.Application()
    for route in api.app.web.web_app.router.routes():
        if route.method == "POST" and route.resource.canonical == "/api/v1/events":
            application.router.add_route("POST", "/api/v1/events", route.handler)
    async with TestClient(TestServer(application)) as client:
        yield client


def _use(monkeypatch: pytest.MonkeyPatch, policy: AdminPolicy) -> None:
    monkeypatch.setattr(auth, "current_policy", lambda: policy)


async def test_create_event_without_token_is_401(
    events_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, AdminPolicy(token=TOKEN, bind_host="0.0.0.0"))
    response = await events_client.post("/api/v1/events", json=EVENT)
    assert response.status == 401
    assert "Authorization: Bearer" in (await response.json())["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    api._produce.assert_not_awaited()


async def test_create_event_with_wrong_token_is_403(
    events_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, AdminPolicy(token=TOKEN, bind_host="0.0.0.0"))
    headers = {"Authorization": f"Bearer {TOKEN}x"}
    response = await events_client.post("/api/v1/events", json=EVENT, headers=headers)
    assert response.status == 403
    api._produce.assert_not_awaited()


async def test_create_event_with_token_is_accepted(
    events_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, AdminPolicy(token=TOKEN, bind_host="0.0.0.0"))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = await events_client.post("/api/v1/events", json=EVENT, headers=headers)
    assert response.status == 202
    api._produce.assert_awaited_once()


async def test_create_event_on_public_bind_without_token_is_403(
    events_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, AdminPolicy(token="", bind_host="0.0.0.0"))
    response = await events_client.post("/api/v1/events", json=EVENT)
    assert response.status == 403
    assert "EVENTPRO_ADMIN_TOKEN" in (await response.json())["error"]
    api._produce.assert_not_awaited()
