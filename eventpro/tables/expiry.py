"""Finding due holds without scanning the holds table on every tick.

A per-partition min-heap of ``(expires_at_ms, reservation_id)``. It is only a cache: the
holds table is the truth. It is dropped on every rebalance (partitions may have moved) and
rebuilt from the table at the next tick, so a restarted or newly assigned worker still
expires the holds it recovered.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable

from eventpro.domain import Hold
from eventpro.topics import partition_for_key

__all__ = ("HoldExpiryIndex",)

logger = logging.getLogger(__name__)


class HoldExpiryIndex:
    """Due-time index of live holds, one heap per partition of ``ticket-requests``."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._built = False

    @property
    def built(self) -> bool:
        """False until :meth:`rebuild` ran after the last :meth:`invalidate`."""
        return self._built

    def invalidate(self) -> None:
        """Forget everything (partitions were revoked or assigned)."""
        self._heaps.clear()
        self._built = False

    def rebuild(self, holds: Iterable[Hold]) -> int:
        """Index every hold in ``holds``; returns how many."""
        self._heaps.clear()
        count = 0
        for hold in holds:
            heap = self._heaps.setdefault(self.partition_of(hold), [])
            heap.append((hold.expires_at_ms, hold.reservation_id))
            count += 1
        for heap in self._heaps.values():
            heapq.heapify(heap)
        self._built = True
        return count

    def partition_of(self, hold: Hold) -> int:
        """The ticket-requests partition that owns ``hold`` (that of its event_id)."""
        return partition_for_key(hold.event_id.encode("utf-8"), self._partitions)

    def add(self, hold: Hold) -> None:
        """Index a hold that was just written (ignored until the index is built)."""
        if self._built:
            heap = self._heaps.setdefault(self.partition_of(hold), [])
            heapq.heappush(heap, (hold.expires_at_ms, hold.reservation_id))

    def pop_due(self, partition: int, now_ms: int) -> list[str]:
        """Remove and return the reservation ids on ``partition`` due at ``now_ms``.

        Some may already be gone from the table (confirmed or released); callers skip those.
        """
        heap = self._heaps.get(partition)
        due: list[str] = []
        while heap and heap[0][0] <= now_ms:
            due.append(heapq.heappop(heap)[1])
        return due

    def __len__(self) -> int:
        return sum(len(heap) for heap in self._heaps.values())
