"""One notification per terminal outcome of a ticket request, never two.

A request ends exactly once: ``OrderConfirmed`` (topic ``orders``), ``RequestRejected`` or
``SeatsReleased`` (topic ``reservations``). :class:`NotificationProcessor` turns that outcome
into a :class:`Notification`, sends it through a :class:`NotificationSink` and records the
request in a dedup mapping (a Faust table keyed ``event_id/request_id`` in the worker), so a
redelivered or re-emitted outcome sends nothing. The sink gets a deterministic
``notification_id`` too, as an idempotency key for a crash between sending and recording.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import orjson

from eventpro.agents.processing import Outgoing, RecentKeys, outcome_event_id
from eventpro.domain import Reason, Status, request_key
from eventpro.schemas import (
    Envelope,
    NotificationSent,
    OrderConfirmed,
    RequestRejected,
    SeatsReleased,
)
from eventpro.topics import NOTIFICATIONS

__all__ = (
    "NOTIFIED_OUTCOMES",
    "SOURCE",
    "Notification",
    "NotificationProcessor",
    "NotificationSink",
    "SimulatedSink",
    "is_notified",
    "notification_for",
)

logger = logging.getLogger(__name__)

SOURCE = "eventpro-notifications"


@dataclass(frozen=True, slots=True)
class Notification:
    """A message to one buyer about how their request ended."""

    notification_id: str
    request_id: str
    event_id: str
    user_id: str
    channel: str
    status: Status
    reason: Reason | None
    ticket_ids: tuple[str, ...]
    subject: str
    correlation_id: str


class NotificationSink(Protocol):
    """Where notifications go (email, SMS provider, ...)."""

    async def send(self, notification: Notification) -> None:
        """Deliver ``notification``; a repeated ``notification_id`` must not deliver twice."""
        ...


class SimulatedSink:
    """Records what it would have sent; optionally appends each one to a JSON-lines file.

    Its memory is bounded however long the worker runs: it deduplicates over the last
    ``remember`` notification ids (a redelivered batch repeats ids seconds later, not after
    that many notifications) and keeps the last ``keep`` notifications in :attr:`sent`.

    :param log_path: file for other processes (tests, demos) to read what was sent.
    """

    def __init__(
        self, log_path: Path | None = None, *, remember: int = 100_000, keep: int = 1_000
    ) -> None:
        self.log_path = log_path
        self.sent: deque[Notification] = deque(maxlen=keep)
        """The most recent notifications delivered, oldest first."""
        self._ids = RecentKeys(remember)

    async def send(self, notification: Notification) -> None:
        """Deliver once per ``notification_id``."""
        if notification.notification_id in self._ids:
            return
        self._ids.add(notification.notification_id)
        self.sent.append(notification)
        if self.log_path is not None:
            line = orjson.dumps(asdict(notification)) + b"\n"
            await asyncio.to_thread(_append, self.log_path, line)
        logger.info(
            "%s to user %s: %s correlation_id=%s",
            notification.channel,
            notification.user_id,
            notification.subject,
            notification.correlation_id,
        )


def _append(path: Path, line: bytes) -> None:
    with path.open("ab") as out:
        out.write(line)


NOTIFIED_OUTCOMES = (OrderConfirmed, RequestRejected, SeatsReleased)
"""The terminal outcomes a buyer is notified of."""


def is_notified(envelope: Envelope) -> bool:
    """Whether ``envelope`` is an outcome :func:`notification_for` notifies of."""
    return isinstance(envelope.data, NOTIFIED_OUTCOMES)


def notification_for(envelope: Envelope, channel: str) -> Notification | None:
    """The notification a terminal outcome deserves, or ``None`` for any other event."""
    data = envelope.data
    if isinstance(data, OrderConfirmed):
        status, reason, tickets = Status.CONFIRMED, None, data.ticket_ids
        subject = f"Your {data.quantity} ticket(s) for {data.event_id} are confirmed"
    elif isinstance(data, RequestRejected):
        status, reason, tickets = Status.REJECTED, data.reason, ()
        subject = f"Your request for {data.event_id} was not accepted ({data.reason.value})"
    elif isinstance(data, SeatsReleased):
        status, reason, tickets = Status.FAILED, data.reason, ()
        subject = f"Your seats for {data.event_id} were released ({data.reason.value})"
    else:
        return None
    return Notification(
        notification_id=outcome_event_id("Notification", data.event_id, data.request_id),
        request_id=data.request_id,
        event_id=data.event_id,
        user_id=data.user_id,
        channel=channel,
        status=status,
        reason=reason,
        ticket_ids=tuple(tickets),
        subject=subject,
        correlation_id=envelope.correlation_id,
    )


class NotificationProcessor:
    """Sends at most one notification per request and says what to emit.

    :param sent: dedup record ``event_id/request_id`` -> notification_id.
    """

    def __init__(
        self, sent: MutableMapping[str, str], sink: NotificationSink, *, channel: str = "email"
    ) -> None:
        self.sent = sent
        self.sink = sink
        self.channel = channel

    def due(self, envelope: Envelope) -> Notification | None:
        """The notification ``envelope`` calls for, unless it is not a terminal outcome or its
        request was notified already."""
        notification = notification_for(envelope, self.channel)
        if notification is None:
            return None
        if request_key(notification.event_id, notification.request_id) in self.sent:
            logger.debug(
                "request %s already notified; %s ignored correlation_id=%s",
                notification.request_id,
                envelope.event_type,
                envelope.correlation_id,
            )
            return None
        return notification

    def record(self, notification: Notification, cause: Envelope) -> Outgoing:
        """Remember that ``notification`` was sent; returns its ``NotificationSent`` record."""
        key = request_key(notification.event_id, notification.request_id)
        self.sent[key] = notification.notification_id
        sent = NotificationSent(
            notification_id=notification.notification_id,
            request_id=notification.request_id,
            event_id=notification.event_id,
            user_id=notification.user_id,
            channel=notification.channel,
            status=notification.status,
            reason=notification.reason,
            ticket_ids=notification.ticket_ids,
        )
        out = Envelope.new(
            sent,
            source=SOURCE,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            event_id=notification.notification_id,
        )
        return Outgoing(NOTIFICATIONS, notification.event_id, out)

    async def handle(self, envelope: Envelope) -> list[Outgoing]:
        """Notify the buyer of a terminal outcome, once; other events are ignored."""
        notification = self.due(envelope)
        if notification is None:
            return []
        await self.sink.send(notification)
        return [self.record(notification, envelope)]
