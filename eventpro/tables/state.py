"""Typed access to the ticketing tables: domain values in, domain values out.

The Faust tables hold JSON bytes (orjson) under plain ``str`` keys; this facade is the only
code that encodes and decodes them, so agents and views deal in
:class:`~eventpro.domain.EventInventory`, :class:`~eventpro.domain.Hold` and
:class:`~eventpro.domain.RequestStatus` only. It works over any ``MutableMapping`` (a Faust
table, or a ``dict`` in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from eventpro.domain import EventInventory, Hold, RequestStatus, request_key, user_key

__all__ = ("TicketingState",)

logger = logging.getLogger(__name__)


def _dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


@dataclass(frozen=True, slots=True)
class TicketingState:
    """The four ticketing tables of one app, all keyed so they co-partition by event_id.

    - ``inventory``: ``event_id`` -> :class:`EventInventory`
    - ``holds``: ``reservation_id`` -> :class:`Hold`, the seat claims: live holds (deleted
      once released or expired) and sold ones (``sold=True``, kept for the event's life)
    - ``user_tickets``: :func:`user_key` -> seats the user holds or bought (``int``)
    - ``statuses``: :func:`request_key` -> :class:`RequestStatus` (the dedup record)
    """

    inventory_table: MutableMapping[str, bytes]
    holds_table: MutableMapping[str, bytes]
    user_tickets_table: MutableMapping[str, int]
    statuses_table: MutableMapping[str, bytes]

    def inventory(self, event_id: str) -> EventInventory | None:
        """The event's counters, or ``None`` for an event never created (on this partition)."""
        raw = self.inventory_table.get(event_id)
        return None if raw is None else EventInventory.from_dict(orjson.loads(raw))

    def put_inventory(self, inventory: EventInventory) -> None:
        """Store the event's counters."""
        self.inventory_table[inventory.event_id] = _dumps(inventory.to_dict())

    def hold(self, reservation_id: str) -> Hold | None:
        """A live hold, or ``None`` once it was confirmed, released or expired."""
        claim = self.claim(reservation_id)
        return None if claim is None or claim.sold else claim

    def claim(self, reservation_id: str) -> Hold | None:
        """The reservation's seat claim, live or sold; ``None`` if released or never made."""
        raw = self.holds_table.get(reservation_id)
        return None if raw is None else Hold.from_dict(orjson.loads(raw))

    def put_hold(self, hold: Hold) -> None:
        """Store a new hold (or a claim's new state)."""
        self.holds_table[hold.reservation_id] = _dumps(hold.to_dict())

    def mark_sold(self, hold: Hold) -> None:
        """Turn a live hold into a sold claim: its seats move from held to sold in one write."""
        self.put_hold(replace(hold, sold=True))

    def delete_hold(self, reservation_id: str) -> None:
        """Remove a finished hold (a tombstone in the changelog), if it is still there."""
        if reservation_id in self.holds_table:
            del self.holds_table[reservation_id]

    def holds(self) -> Iterator[Hold]:
        """Every live hold this worker stores (all of its active partitions)."""
        for claim in self.claims():
            if not claim.sold:
                yield claim

    def claims(self) -> Iterator[Hold]:
        """Every seat claim this worker stores, live and sold (all of its active partitions)."""
        for raw in list(self.holds_table.values()):
            yield Hold.from_dict(orjson.loads(raw))

    def events(self) -> Iterator[EventInventory]:
        """Every event this worker stores (all of its active partitions)."""
        for raw in list(self.inventory_table.values()):
            yield EventInventory.from_dict(orjson.loads(raw))

    def user_counts(self) -> Iterator[tuple[str, int]]:
        """Every stored (user key, seat count) (all of this worker's active partitions)."""
        yield from list(self.user_tickets_table.items())

    def delete_user_key(self, key: str) -> None:
        """Remove a user seat count by its :func:`user_key`."""
        if key in self.user_tickets_table:
            del self.user_tickets_table[key]

    def user_tickets(self, event_id: str, user_id: str) -> int:
        """Seats ``user_id`` holds or bought for ``event_id``."""
        return int(self.user_tickets_table.get(user_key(event_id, user_id), 0))

    def put_user_tickets(self, event_id: str, user_id: str, count: int) -> None:
        """Store the user's seat count; zero deletes the key so the table stays small."""
        key = user_key(event_id, user_id)
        if count > 0:
            self.user_tickets_table[key] = count
        elif key in self.user_tickets_table:
            del self.user_tickets_table[key]

    def status(self, event_id: str, request_id: str) -> RequestStatus | None:
        """The stored status of a request, or ``None`` if it was never decided (or expired)."""
        raw = self.statuses_table.get(request_key(event_id, request_id))
        return None if raw is None else RequestStatus.from_dict(orjson.loads(raw))

    def put_status(self, status: RequestStatus) -> None:
        """Store a request's status (written last: it records that a step is done)."""
        key = request_key(status.event_id, status.request_id)
        self.statuses_table[key] = _dumps(status.to_dict())
