"""Creating events: idempotent, and never changing the spec of an existing event."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from eventpro.domain.errors import EventSpecConflict
from eventpro.domain.model import CreateEvent, EventInventory

__all__ = ("CreateKind", "EventCreation", "create_event", "validate_event_spec")

logger = logging.getLogger(__name__)

MAX_ID_LENGTH = 128


class CreateKind(StrEnum):
    """What a create command did."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class EventCreation:
    """Outcome of :func:`create_event`.

    ``inventory`` is the event's state after the command (``None`` only for an invalid
    command about an unknown event_id). Write it back only when ``kind is CREATED``.
    """

    kind: CreateKind
    inventory: EventInventory | None
    detail: str = ""

    @property
    def changed(self) -> bool:
        """True when the inventory table must be written."""
        return self.kind is CreateKind.CREATED

    def raise_for_conflict(self) -> None:
        """Raise :class:`EventSpecConflict` for a conflicting re-create, else do nothing."""
        if self.kind is CreateKind.CONFLICT:
            raise EventSpecConflict(self.detail)


def validate_event_spec(cmd: CreateEvent) -> str | None:
    """A readable reason why ``cmd`` can never create an event, or ``None`` when it is valid."""
    if not cmd.event_id or len(cmd.event_id) > MAX_ID_LENGTH or "/" in cmd.event_id:
        return f"event_id must be 1-{MAX_ID_LENGTH} characters without '/'"
    if not cmd.name.strip():
        return "name must not be empty"
    if cmd.capacity < 1:
        return f"capacity must be at least 1, got {cmd.capacity}"
    if cmd.price_cents < 0:
        return f"price_cents must not be negative, got {cmd.price_cents}"
    if cmd.max_per_user < 1:
        return f"max_per_user must be at least 1, got {cmd.max_per_user}"
    return None


def create_event(
    existing: EventInventory | None, cmd: CreateEvent, *, now_ms: int
) -> EventCreation:
    """Apply a create command to the current state of ``cmd.event_id``.

    - invalid spec -> ``INVALID`` (state unchanged);
    - no event yet -> ``CREATED`` with empty counters;
    - same spec again -> ``UNCHANGED`` (a redelivered or resubmitted create is a no-op);
    - different spec -> ``CONFLICT`` (state unchanged; the first spec wins).
    """
    problem = validate_event_spec(cmd)
    if problem is not None:
        return EventCreation(CreateKind.INVALID, existing, problem)
    if existing is None:
        inventory = EventInventory(
            event_id=cmd.event_id,
            name=cmd.name,
            capacity=cmd.capacity,
            price_cents=cmd.price_cents,
            max_per_user=cmd.max_per_user,
            created_at_ms=now_ms,
        )
        return EventCreation(CreateKind.CREATED, inventory)
    if existing.same_spec(cmd):
        return EventCreation(CreateKind.UNCHANGED, existing)
    return EventCreation(
        CreateKind.CONFLICT,
        existing,
        f"event {cmd.event_id!r} already exists with a different spec "
        f"(name={existing.name!r}, capacity={existing.capacity}, "
        f"price_cents={existing.price_cents}, max_per_user={existing.max_per_user}); "
        "use another event_id",
    )
