"""Upcasters: turn an older payload version into the next one, on read.

One function per ``(event_type, from_version)``; :func:`upcast` chains them up to the
current version. Add a function here (and keep the old model for docs and validation)
whenever a payload changes shape, so records already on the topics stay readable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from eventpro.schemas.envelope import EventData
from eventpro.schemas.events import TicketRequestedV1

__all__ = ("LEGACY_MODELS", "UPCASTERS", "Upcaster", "upcast")

logger = logging.getLogger(__name__)

Upcaster = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
"""``(data, envelope) -> data of the next version``; may raise ``pydantic.ValidationError``."""


def _ticket_requested_v1_to_v2(data: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
    old = TicketRequestedV1.model_validate(data)
    return {
        "request_id": old.request_id or envelope.get("event_id"),
        "event_id": old.event,
        "user_id": old.user,
        "quantity": old.qty,
    }


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("TicketRequested", 1): _ticket_requested_v1_to_v2,
}

LEGACY_MODELS: tuple[type[EventData], ...] = (TicketRequestedV1,)
"""Older payload versions still accepted on read (exported as JSON Schema too)."""


def upcast(
    event_type: str, version: int, current: int, data: dict[str, Any], envelope: dict[str, Any]
) -> dict[str, Any] | None:
    """``data`` raised from ``version`` to ``current``, or ``None`` if a step is missing."""
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            return None
        data = step(data, envelope)
        version += 1
    return data
