"""Recount an event's seats from its seat claims after a crash.

Under at-least-once a worker killed mid-write leaves any subset of its last changelog
records behind (they go to four topics, with no atomicity between them). The seat claims
(:class:`~eventpro.domain.Hold` values, live or sold) are written before the status that
records a step and removed only after it, and each is an absolute value under its own key,
so they are right after any crash; the counters (``held``, ``sold``, each user's seats) are
running totals that a redelivered record would apply twice. So before a worker handles the
first record of a partition it just took over, the counters of that partition's events are
recounted from the claims and any difference is written back (and logged).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace

from eventpro.domain import user_key
from eventpro.tables.state import TicketingState
from eventpro.topics import partition_for_key

__all__ = ("Correction", "PendingPartitions", "reconcile_partition")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Correction:
    """One counter that disagreed with the claims, and the value written instead."""

    key: str
    field: str
    stored: int
    counted: int


def _partition(event_id: str, partitions: int) -> int:
    return partition_for_key(event_id.encode("utf-8"), partitions)


def reconcile_partition(state: TicketingState, partition: int, partitions: int) -> list[Correction]:
    """Make the counters of ``partition``'s events equal to what their claims add up to.

    Writes through ``state`` (so the caller must make a record of ``partition`` Faust's
    current event); returns the corrections made, empty when everything agreed.
    """
    stored_events = list(state.events())
    events = {
        inv.event_id: inv
        for inv in stored_events
        if _partition(inv.event_id, partitions) == partition
    }
    held: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    seats: Counter[tuple[str, str]] = Counter()
    for claim in state.claims():
        if claim.event_id not in events:
            continue
        (sold if claim.sold else held)[claim.event_id] += claim.quantity
        seats[claim.event_id, claim.user_id] += claim.quantity
    corrections: list[Correction] = []
    for event_id, inventory in events.items():
        if (inventory.held, inventory.sold) != (held[event_id], sold[event_id]):
            corrections.append(Correction(event_id, "held", inventory.held, held[event_id]))
            corrections.append(Correction(event_id, "sold", inventory.sold, sold[event_id]))
            state.put_inventory(replace(inventory, held=held[event_id], sold=sold[event_id]))
    counted_keys = {user_key(e, u) for e, u in seats}
    by_length = sorted((inv.event_id for inv in stored_events), key=len, reverse=True)
    for key, stored in state.user_counts():
        owner = next((e for e in by_length if key.startswith(f"{e}/")), None)
        if key not in counted_keys and owner in events:
            corrections.append(Correction(key, "seats", int(stored), 0))
            state.delete_user_key(key)
    for (event_id, user_id), counted in seats.items():
        stored = state.user_tickets(event_id, user_id)
        if stored != counted:
            corrections.append(Correction(user_key(event_id, user_id), "seats", stored, counted))
            state.put_user_tickets(event_id, user_id, counted)
    for correction in corrections:
        if correction.stored != correction.counted:
            logger.warning(
                "partition %d: %s %s was %d, its claims add up to %d; corrected (a crash "
                "left part of a step's writes)",
                partition,
                correction.key,
                correction.field,
                correction.stored,
                correction.counted,
            )
    return [c for c in corrections if c.stored != c.counted]


class PendingPartitions:
    """Partitions whose counters must be recounted before their next record is handled.

    Every partition is pending at start and again after each rebalance (a partition may
    have come from a worker that crashed mid-write).
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._pending: set[int] = set(range(partitions))
        self.rebalances = 0
        """How many rebalances this process went through (work that spans one is stale)."""

    def invalidate(self) -> None:
        """A rebalance happened: recount every partition before using it."""
        self._pending = set(range(self.partitions))
        self.rebalances += 1

    def take(self, partition: int) -> bool:
        """True (once) if ``partition`` must be recounted now."""
        if partition in self._pending:
            self._pending.discard(partition)
            return True
        return False
