"""Counting a batch of facts with one table write per key: totals and windows written once.

Per fact the analytics write the event's totals, one window per size and the fact's id
(four store writes and four changelog records with two window sizes), most of them to the
same few keys: an on-sale has few events and one current window per size.
:class:`BatchedAnalytics` counts a batch of facts over write-back overlays, then writes each
dirty totals and window key once, and the fact ids (one per fact, nothing to merge) after
them, in the per-fact path's order. The agent acknowledges the batch's records only after
the batch was written (Faust commits their offsets only once the producer flushed the
changelog records), so a crash before that reads them again and the fact ids keep them from
counting twice.

Each write is made in the context of a record of the batch that touched the key (the tables
are co-partitioned with the records), through a :class:`~eventpro.tables.batching.BatchCursor`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from eventpro.analytics.facts import SaleFact, WindowCounts
from eventpro.analytics.processor import AnalyticsProcessor, Counted, SeenStore, WindowStore
from eventpro.analytics.windows import Window
from eventpro.tables.batching import BatchCursor, WriteBackTable

__all__ = ("BatchedAnalytics", "WriteBackSeenStore", "WriteBackWindowStore")

logger = logging.getLogger(__name__)

EventTimeAt = Callable[[float], AbstractContextManager[Any]]
"""Makes a timestamp the event time of the windowed writes inside the block."""


class WriteBackWindowStore:
    """A :class:`WindowStore` whose puts stay in a dict until :meth:`flush`."""

    def __init__(self, inner: WindowStore, cursor: BatchCursor[Any], at: EventTimeAt) -> None:
        self.inner = inner
        self.size = inner.size
        self._cursor = cursor
        self._at = at
        self._pending: dict[tuple[str, Window], tuple[WindowCounts, Any]] = {}

    def get(self, event_id: str, window: Window) -> WindowCounts | None:
        pending = self._pending.get((event_id, window))
        return self.inner.get(event_id, window) if pending is None else pending[0]

    def put(self, event_id: str, window: Window, counts: WindowCounts) -> None:
        self._pending[(event_id, window)] = (counts, self._cursor.current)

    def flush(self) -> int:
        """Write each pending window once, at its start as event time; returns writes."""
        for (event_id, window), (counts, source) in self._pending.items():
            self._cursor.restore(source)
            with self._at(window.start):
                self.inner.put(event_id, window, counts)
        written = len(self._pending)
        self._pending.clear()
        return written

    def discard(self) -> None:
        """Forget the pending windows."""
        self._pending.clear()


class WriteBackSeenStore:
    """A :class:`SeenStore` whose remembered ids stay in a dict until :meth:`flush`."""

    def __init__(self, inner: SeenStore, cursor: BatchCursor[Any], at: EventTimeAt) -> None:
        self.inner = inner
        self._cursor = cursor
        self._at = at
        self._pending: dict[str, tuple[SaleFact, Any]] = {}

    def seen(self, fact: SaleFact) -> bool:
        return fact.fact_id in self._pending or self.inner.seen(fact)

    def remember(self, fact: SaleFact) -> None:
        self._pending[fact.fact_id] = (fact, self._cursor.current)

    def flush(self) -> int:
        """Write each pending id at its fact's event time; returns writes."""
        for fact, source in self._pending.values():
            self._cursor.restore(source)
            with self._at(fact.occurred_at):
                self.inner.remember(fact)
        written = len(self._pending)
        self._pending.clear()
        return written

    def discard(self) -> None:
        """Forget the pending ids."""
        self._pending.clear()


class BatchedAnalytics:
    """Counts facts like :class:`AnalyticsProcessor`, writing the tables once per batch.

    :meth:`count` each fact with the record it came from, then :meth:`flush`: windows,
    totals, then fact ids. Reads during the batch see its own counts.

    :param at: makes a timestamp the event time of windowed reads and writes (the
        worker's ``event_time.at``).
    """

    def __init__(
        self,
        totals: MutableMapping[str, bytes],
        windows: Mapping[int, WindowStore],
        seen: SeenStore,
        expires: Callable[[int], float],
        *,
        cursor: BatchCursor[Any],
        at: EventTimeAt,
    ) -> None:
        self.cursor = cursor
        self._at = at
        self.totals: WriteBackTable[bytes] = WriteBackTable(totals, cursor)
        self.windows = {
            size: WriteBackWindowStore(store, cursor, at) for size, store in windows.items()
        }
        self.seen = WriteBackSeenStore(seen, cursor, at)
        self.processor = AnalyticsProcessor(self.totals, self.windows, self.seen, expires)

    def count(self, fact: SaleFact, source: Any) -> Counted:
        """Count ``fact`` (read from the record ``source``) into the batch."""
        self.cursor.enter(source)
        with self._at(fact.occurred_at):
            return self.processor.handle(fact)

    def flush(self) -> int:
        """Write the batch's counts, each dirty key once; returns table writes.

        If a write fails, the rest of the batch is discarded and the error propagates.
        """
        try:
            written = sum(store.flush() for store in self.windows.values())
            written += self.totals.flush()
            return written + self.seen.flush()
        except BaseException:
            self.discard()
            raise
        finally:
            self.cursor.leave()

    def discard(self) -> None:
        """Forget every pending count."""
        for store in self.windows.values():
            store.discard()
        self.totals.discard()
        self.seen.discard()
        self.cursor.leave()
