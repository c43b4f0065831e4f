"""Named domain errors: business facts that make a command impossible to apply.

Ordinary outcomes (sold out, unknown event, limit exceeded, invalid quantity) are *not*
errors: the decision functions return them as rejections. These exceptions mean the input
or the stored state is unusable, and the agent must not apply the record.
"""

from __future__ import annotations

import logging

from eventpro.exceptions import EventProError

__all__ = (
    "DomainError",
    "EventSpecConflict",
    "InvalidRequest",
    "InventoryInvariantViolated",
    "UnknownEvent",
)

logger = logging.getLogger(__name__)


class DomainError(EventProError):
    """Root of the ticketing domain's errors."""


class InvalidRequest(DomainError):
    """A command's values can never be valid (empty id, negative capacity, ...).

    Raised by constructors of command values used outside the decision path (client, HTTP
    layer). Fix the caller's input; on a topic, send the record to the dead-letter queue.
    """


class UnknownEvent(DomainError):
    """An operation names an event_id that was never created.

    Raised by helpers that require an existing event (for example saga steps given no
    inventory). Create the event first (``eventpro events create``) or check the event_id.
    """


class EventSpecConflict(DomainError):
    """An event_id was created again with a different name, capacity, price or limit.

    :func:`eventpro.domain.create_event` reports this as an outcome; callers that prefer an
    exception use :meth:`eventpro.domain.EventCreation.raise_for_conflict`. Choose another
    event_id: an existing event's spec is never changed by a create command.
    """


class InventoryInvariantViolated(DomainError):
    """Stored counters break ``0 <= held``, ``0 <= sold``, ``held + sold <= capacity``.

    Raised by :func:`eventpro.domain.check_inventory`. It means a bug or a corrupted table:
    stop the worker, keep the data directory for investigation, and rebuild the inventory
    table from its changelog.
    """
