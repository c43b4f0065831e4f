"""The organiser token: who may create events and replay dead letters over HTTP.

Organiser write endpoints are wrapped with :func:`require_admin_token`. Clients send
``Authorization: Bearer <EVENTPRO_ADMIN_TOKEN>``; the token is compared in constant time.

Without a token configured the safe default depends on where the API listens: bound to a
loopback address (``eventpro dev``, the default ``EVENTPRO_WEB_HOST=127.0.0.1``) only this
machine can reach it, so organiser writes stay open; bound to anything else they are refused
with 403 until ``EVENTPRO_ADMIN_TOKEN`` (or ``EVENTPRO_ADMIN_TOKEN_FILE``) is set.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faust import web

from eventpro.security import SecurityConfigError, read_secret
from eventpro.settings import Settings, get_settings

__all__ = (
    "MIN_TOKEN_LENGTH",
    "AdminPolicy",
    "Denial",
    "current_policy",
    "is_loopback",
    "require_admin_token",
)

logger = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16
"""Shorter organiser tokens are refused at startup: they can be guessed."""

_REALM = 'Bearer realm="eventpro-organiser"'

Handler = Callable[..., Awaitable[web.Response]]


def is_loopback(host: str) -> bool:
    """True if ``host`` is only reachable from this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a request is refused: HTTP status, a message that says what to do, headers."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    """The organiser-token rule of one worker.

    :param token: the expected token; ``""`` when none is configured.
    :param bind_host: the address the API listens on (decides the no-token default).
    """

    token: str
    bind_host: str

    def __repr__(self) -> str:
        return f"AdminPolicy(token={'<set>' if self.token else '<unset>'}, bind={self.bind_host})"

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminPolicy:
        """The policy of ``settings``.

        :raises SecurityConfigError: the token file is unreadable or the token is too short.
        """
        token = read_secret(
            settings.admin_token, settings.admin_token_file, env_name="EVENTPRO_ADMIN_TOKEN"
        ).strip()
        if token and len(token) < MIN_TOKEN_LENGTH:
            raise SecurityConfigError(
                f"EVENTPRO_ADMIN_TOKEN is {len(token)} characters; use at least "
                f"{MIN_TOKEN_LENGTH} random ones, e.g. `openssl rand -hex 32`"
            )
        return cls(token=token, bind_host=settings.web_host)

    @property
    def open_without_token(self) -> bool:
        """No token configured and only this machine can reach the API."""
        return not self.token and is_loopback(self.bind_host)

    def check(self, authorization: str | None) -> Denial | None:
        """``None`` if a request with this ``Authorization`` header may proceed."""
        if not self.token:
            if self.open_without_token:
                return None
            return Denial(
                403,
                "organiser endpoints are disabled: EVENTPRO_ADMIN_TOKEN is not set and the API "
                f"listens on {self.bind_host}, not a loopback address; set EVENTPRO_ADMIN_TOKEN "
                "(or EVENTPRO_ADMIN_TOKEN_FILE) on every worker",
            )
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return Denial(
                401,
                "this endpoint is for organisers: send 'Authorization: Bearer <token>' with "
                "the value of EVENTPRO_ADMIN_TOKEN",
                (("WWW-Authenticate", _REALM),),
            )
        if not hmac.compare_digest(given.strip().encode("utf-8"), self.token.encode("utf-8")):
            return Denial(403, "the organiser token is wrong (compare with EVENTPRO_ADMIN_TOKEN)")
        return None


@functools.lru_cache(maxsize=1)
def current_policy() -> AdminPolicy:
    """This process's policy, from :func:`~eventpro.settings.get_settings` (read once)."""
    policy = AdminPolicy.from_settings(get_settings())
    if policy.open_without_token:
        logger.warning(
            "EVENTPRO_ADMIN_TOKEN is not set: organiser endpoints are open to this machine "
            "only (the API listens on %s)",
            policy.bind_host,
        )
    return policy


def require_admin_token(handler: Handler) -> Handler:
    """Decorate a ``faust.web.View`` method so it runs only for organisers."""

    @functools.wraps(handler)
    async def guarded(view: web.View, request: web.Request, *args: Any, **kwargs: Any) -> Any:
        denial = current_policy().check(request.headers.get("Authorization"))
        if denial is not None:
            logger.info("organiser request refused (%d): %s", denial.status, request.path)
            return view.json(
                {"error": denial.message}, status=denial.status, headers=dict(denial.headers)
            )
        return await handler(view, request, *args, **kwargs)

    return guarded
