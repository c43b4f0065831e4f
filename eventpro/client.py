"""A small typed producer for apps that sell tickets through EventPro.

Usage::

    async with TicketClient("127.0.0.1:9092") as client:
        event_id = await client.create_event("Concert", capacity=1000, price_cents=5000)
        request_id = await client.request_tickets(event_id, "user-42", 2)

Each call waits until the broker acknowledged the record (``acks=all``, idempotent
producer), then returns the id to follow the request with
``GET /api/v1/events/{event_id}/requests/{request_id}``. Records are keyed by ``event_id``
and carry the envelope documented in :mod:`eventpro.schemas`. Calls may run concurrently
(``asyncio.gather``); ``linger_ms=5`` batches them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, Self

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from eventpro.domain import InvalidRequest
from eventpro.schemas import (
    Envelope,
    EventCreated,
    EventData,
    TicketRequested,
    encode,
    new_id,
)
from eventpro.topics import TICKET_REQUESTS

__all__ = ("Producer", "TicketClient")

logger = logging.getLogger(__name__)


class Producer(Protocol):
    """What :class:`TicketClient` needs from a Kafka producer (aiokafka's fits)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> object: ...


def _bootstrap(url: str) -> str:
    """``kafka://a:1;kafka://b:2`` (Faust style) or ``a:1,b:2`` -> ``a:1,b:2``."""
    hosts = [part.strip() for part in url.replace(";", ",").split(",") if part.strip()]
    return ",".join(host.split("://", 1)[-1] for host in hosts)


class TicketClient:
    """Async context manager that publishes ticket requests and event creations.

    :param bootstrap: ``host:port`` (or ``kafka://host:port``, comma-separated for several).
    :param topic_prefix: the deployment's ``EVENTPRO_TOPIC_PREFIX``. Default - ``""``.
    :param source: the envelope's ``source``. Default - ``"partner-app"``.
    :param producer: a ready-made producer (tests); by default an ``AIOKafkaProducer`` with
        ``acks="all"``, ``enable_idempotence=True``, ``linger_ms=5``.
    :param client_options: extra ``AIOKafkaProducer`` arguments, e.g.
        ``eventpro.security.aiokafka_security_kwargs(settings)`` for a TLS/SASL cluster.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "",
        source: str = "partner-app",
        producer: Producer | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = _bootstrap(bootstrap)
        self.client_options = dict(client_options or {})
        self.topic = f"{topic_prefix}{TICKET_REQUESTS}"
        self.source = source
        self._producer: Producer | None = producer
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect the producer (done by ``async with``)."""
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                client_id=self.source,
                **self.client_options,
            )
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        """Flush and close the producer (done by ``async with``)."""
        if self._producer is not None and self._started:
            self._started = False
            await self._producer.stop()

    async def request_tickets(
        self,
        event_id: str,
        user_id: str,
        quantity: int,
        request_id: str | None = None,
        *,
        correlation_id: str | None = None,
    ) -> str:
        """Publish a ``TicketRequested``; return its ``request_id`` (generated when omitted).

        Resending with the same ``request_id`` is safe: the request gets one outcome.

        :raises InvalidRequest: an id is empty, too long or contains ``/`` or whitespace.
        """
        rid = request_id or new_id()
        data = self._build(
            TicketRequested,
            request_id=rid,
            event_id=event_id,
            user_id=user_id,
            quantity=quantity,
        )
        await self._send(data, correlation_id)
        return rid

    async def create_event(
        self,
        name: str,
        capacity: int,
        price_cents: int,
        *,
        max_per_user: int = 8,
        event_id: str | None = None,
    ) -> str:
        """Publish an ``EventCreated``; return its ``event_id`` (generated when omitted).

        Creating the same event_id again with the same values is a no-op; with other values
        it is rejected (the first wins).

        :raises InvalidRequest: capacity < 1, negative price, max_per_user < 1, bad ids.
        """
        eid = event_id or new_id()
        data = self._build(
            EventCreated,
            event_id=eid,
            name=name,
            capacity=capacity,
            price_cents=price_cents,
            max_per_user=max_per_user,
        )
        await self._send(data, None)
        return eid

    def envelope(self, data: EventData, correlation_id: str | None = None) -> Envelope:
        """The envelope this client would send for ``data``."""
        return Envelope.new(data, source=self.source, correlation_id=correlation_id)

    @staticmethod
    def _build(model: type[EventData], **fields: object) -> EventData:
        try:
            return model.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise InvalidRequest(f"{model.EVENT_TYPE} not sent: {problems}") from None

    async def _send(self, data: EventData, correlation_id: str | None) -> None:
        if self._producer is None or not self._started:
            raise RuntimeError("TicketClient is not started: use `async with TicketClient(...)`")
        key = data.partition_key
        await self._producer.send_and_wait(
            self.topic,
            value=encode(self.envelope(data, correlation_id)),
            key=key.encode() if key is not None else None,
        )
