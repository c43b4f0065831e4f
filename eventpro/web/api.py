"""The JSON API: create events, submit ticket requests, read inventory and request status.

Writes are produced to ``ticket-requests`` (keyed by event_id) and answered as soon as the
broker has acknowledged them; the inventory agent decides them. Reads of partitioned state are
routed to the worker that owns the event's partition (:func:`~eventpro.web.routing.owner_route`),
so every worker answers the same; a worker that is rebalancing answers ``503`` with
``Retry-After`` rather than from tables that may be stale.

``POST /api/v1/events`` answers 201 once the event's owner has applied it (it can be bought at
once), or 202 if that takes longer than a few seconds (for example during a rebalance).

A request status that is not in the table yet answers ``404`` with ``"status": "unknown"``:
the request was never submitted, or it was accepted (202) and not decided yet, typically for a
few milliseconds. Clients poll ``status_url`` until they see a status.

Organiser writes need the organiser token (:mod:`eventpro.web.auth`); bodies are bounded
(``EVENTPRO_MAX_BODY_BYTES``, 413) and ticket requests can be rate-limited per user
(``EVENTPRO_RATE_LIMIT_PER_USER``, 429 with ``Retry-After``; :mod:`eventpro.web.ratelimit`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust import web
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable
from yarl import URL

from eventpro.agents.channels import ticket_requests_topic
from eventpro.app import app
from eventpro.schemas import Envelope, EventCreated, TicketRequested, encode, new_id
from eventpro.settings import get_settings
from eventpro.tables import inventory_table, state
from eventpro.web.auth import current_policy, require_admin_token
from eventpro.web.bodies import BodyError, CreateEventBody, TicketRequestBody, parse_body
from eventpro.web.limits import read_limited_body
from eventpro.web.ratelimit import limiter_from_settings
from eventpro.web.routing import owner_route, view_is_stale

__all__ = ("API_PREFIX", "SOURCE", "blueprint", "status_path")

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
EVENT_APPLY_WAIT_SECONDS = 5.0
SOURCE = "eventpro-api"

_settings = get_settings()
_rate_limiter = limiter_from_settings(_settings)
current_policy()  # a bad organiser token setting stops the worker at startup, not per request
blueprint = web.Blueprint("api")


def status_path(event_id: str, request_id: str) -> str:
    """Path of a request's status resource."""
    return f"{API_PREFIX}/events/{event_id}/requests/{request_id}"


async def _produce(envelope: Envelope, event_id: str) -> None:
    """Produce to ticket-requests and wait for the broker's acknowledgement."""
    fut = await ticket_requests_topic.send(key=event_id.encode("utf-8"), value=encode(envelope))
    await fut


def _same_node(url: URL) -> bool:
    own = URL(str(app.conf.canonical_url))
    return (url.host, url.port) == (own.host, own.port)


async def lookup_event(event_id: str) -> dict[str, Any] | None:
    """The event's inventory as JSON, from its owner; ``None`` if it does not exist.

    :raises ServiceUnavailable: the owner is unknown (rebalancing) or did not answer.
    """
    if view_is_stale(app) is not None:
        raise ServiceUnavailable()
    try:
        owner = app.router.key_store(inventory_table.name, event_id)
    except KeyError:
        raise ServiceUnavailable() from None
    if _same_node(owner):
        inventory = state.inventory(event_id)
        return None if inventory is None else inventory.to_dict()
    url = owner.with_path(f"{API_PREFIX}/events/{event_id}")
    async with app.http_client.get(url) as response:
        if response.status == 404:
            return None
        if response.status != 200:
            raise ServiceUnavailable()
        body: dict[str, Any] = await response.json()
        return body


async def _wait_until_applied(event_id: str) -> dict[str, Any] | None:
    """The event once the inventory owner has applied it, so 201 means it can be bought."""
    deadline = asyncio.get_running_loop().time() + EVENT_APPLY_WAIT_SECONDS
    while True:
        try:
            found = await lookup_event(event_id)
        except (ServiceUnavailable, SameNode, OSError):
            found = None
        if found is not None or asyncio.get_running_loop().time() >= deadline:
            return found
        await asyncio.sleep(0.02)


def _body_error(view: web.View, exc: BodyError) -> web.Response:
    return view.json(exc.as_json(), status=exc.status)


@blueprint.route("/events", name="events")
class EventsView(web.View):
    """``POST /api/v1/events``: put an event on sale."""

    @require_admin_token
    async def post(self, request: web.Request) -> web.Response:
        """201 with the event; 200 if the same event exists; 409 for a different spec."""
        try:
            raw = await read_limited_body(request, _settings.max_body_bytes)
            body = parse_body(CreateEventBody, raw)
        except BodyError as exc:
            return _body_error(self, exc)
        created = EventCreated(
            event_id=body.event_id or new_id(),
            name=body.name,
            capacity=body.capacity,
            price_cents=body.price_cents,
            max_per_user=body.max_per_user or _settings.default_max_per_user,
        )
        existing = await lookup_event(created.event_id)
        if existing is not None:
            same = all(
                existing.get(field) == getattr(created, field)
                for field in ("name", "capacity", "price_cents", "max_per_user")
            )
            if not same:
                return self.error(
                    409,
                    f"event {created.event_id!r} already exists with a different spec; "
                    "use another event_id",
                    event=existing,
                )
            return self.json({**existing, "url": f"{API_PREFIX}/events/{created.event_id}"})
        await _produce(Envelope.new(created, source=SOURCE), created.event_id)
        logger.info("event %s submitted (capacity %d)", created.event_id, created.capacity)
        url = f"{API_PREFIX}/events/{created.event_id}"
        applied = await _wait_until_applied(created.event_id)
        if applied is None:
            # Queued but not applied in time (e.g. a rebalance): accepted, not yet created.
            return self.json({**created.model_dump(), "url": url}, status=202)
        return self.json({**applied, "url": url}, status=201)


@blueprint.route("/events/{event_id}", name="event-detail")
class EventDetailView(web.View):
    """``GET /api/v1/events/{event_id}``: live seat counters, from the partition owner."""

    @owner_route(app, inventory_table, match_info="event_id")
    async def get(self, request: web.Request, event_id: str) -> web.Response:
        """200 with capacity/available/held/sold, or 404."""
        inventory = state.inventory(event_id)
        if inventory is None:
            return self.error(404, f"no event {event_id!r}", event_id=event_id)
        return self.json(inventory.to_dict())


@blueprint.route("/events/{event_id}/requests/{request_id}", name="request-status")
class RequestStatusView(web.View):
    """``GET /api/v1/events/{event_id}/requests/{request_id}``: a request's status."""

    @owner_route(app, inventory_table, match_info="event_id")
    async def get(self, request: web.Request, event_id: str, request_id: str) -> web.Response:
        """200 with the status, or 404 ``unknown`` (never submitted or not decided yet)."""
        status = state.status(event_id, request_id)
        if status is None:
            return self.json(
                {
                    "request_id": request_id,
                    "event_id": event_id,
                    "status": "unknown",
                    "error": "no decision for this request yet: it was never submitted, "
                    "or it is still queued; retry shortly",
                },
                status=404,
            )
        body = status.to_dict()
        return self.json(
            {
                "request_id": body["request_id"],
                "event_id": body["event_id"],
                "user_id": body["user_id"],
                "quantity": body["quantity"],
                "status": body["status"],
                "reason": body["reason"],
                "reservation_id": body["reservation_id"],
                "ticket_ids": body["ticket_ids"],
                "updated_at_ms": body["updated_at_ms"],
            }
        )


@blueprint.route("/ticket-requests", name="ticket-requests")
class TicketRequestsView(web.View):
    """``POST /api/v1/ticket-requests``: accept a request and queue it for the inventory."""

    async def post(self, request: web.Request) -> web.Response:
        """202 with request_id and status_url; 400/422 for bad input or an unknown event."""
        try:
            raw = await read_limited_body(request, _settings.max_body_bytes)
            body = parse_body(TicketRequestBody, raw)
        except BodyError as exc:
            return _body_error(self, exc)
        if body.quantity > _settings.max_quantity:
            message = f"quantity: at most {_settings.max_quantity} tickets per request"
            return self.json({"error": message, "details": [message]}, status=422)
        refused = _rate_limiter.acquire(body.user_id) if _rate_limiter is not None else None
        if refused is not None:
            return self.json(
                {
                    "error": f"too many ticket requests from user {body.user_id!r}; "
                    f"retry in {refused.retry_after:.1f} s",
                    "retry_after_seconds": round(refused.retry_after, 3),
                },
                status=429,
                headers={"Retry-After": refused.retry_after_header},
            )
        if not await _event_known(body.event_id):
            message = f"event_id: no event {body.event_id!r} is on sale"
            return self.json({"error": message, "details": [message]}, status=422)
        request_id = body.request_id or new_id()
        envelope = Envelope.new(
            TicketRequested(
                request_id=request_id,
                event_id=body.event_id,
                user_id=body.user_id,
                quantity=body.quantity,
            ),
            source=SOURCE,
        )
        await _produce(envelope, body.event_id)
        path = status_path(body.event_id, request_id)
        return self.json(
            {
                "request_id": request_id,
                "event_id": body.event_id,
                "status": "pending",
                "status_url": str(request.url.with_path(path).with_query(None)),
                "correlation_id": envelope.correlation_id,
            },
            status=202,
            headers={"Location": path},
        )


_KNOWN_EVENTS: set[str] = set()
_KNOWN_EVENTS_MAX = 100_000


async def _event_known(event_id: str) -> bool:
    """True if the event exists; unknown owners (rebalancing) count as known.

    Events are never deleted, so positive answers are cached; while the owner cannot be asked
    the request is accepted and the agent answers ``unknown_event`` if needed.
    """
    if event_id in _KNOWN_EVENTS:
        return True
    try:
        exists = await lookup_event(event_id) is not None
    except (ServiceUnavailable, SameNode, OSError):
        return True
    if exists:
        if len(_KNOWN_EVENTS) >= _KNOWN_EVENTS_MAX:
            _KNOWN_EVENTS.clear()
        _KNOWN_EVENTS.add(event_id)
    return exists


blueprint.register(app, url_prefix=API_PREFIX)
