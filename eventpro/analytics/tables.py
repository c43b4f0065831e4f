"""The analytics tables, declared on :data:`eventpro.app.app`.

- ``sales-totals``: event_id -> all-time counts + watermark (JSON bytes). Raw ``str`` keys,
  the same bytes as the event_id record key, so ``app.table_route`` finds the owner.
- ``sales-<N>s``: one tumbling windowed table per configured size,
  ``.tumbling(N, expires=N * history).relative_to(event_time)``: windows follow the records'
  ``occurred_at`` (never the wall clock), so a replay fills the same windows.
- ``sales-seen``: ids of facts already counted (dedup of redelivered records), windowed by the
  same event time over the longest expiry: older duplicates are late and dropped anyway.

All are written only by the analytics agent while it handles a record of ``reservations`` or
``orders`` (keyed by event_id), so each change goes to the changelog partition of the record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from faust.types import EventT
from faust.types.tables import WindowWrapperT

from eventpro.analytics.batching import BatchedAnalytics
from eventpro.analytics.config import get_analytics_settings
from eventpro.analytics.facts import SaleFact, WindowCounts
from eventpro.analytics.processor import AnalyticsProcessor
from eventpro.analytics.windows import Window
from eventpro.app import app
from eventpro.settings import get_settings
from eventpro.tables.batching import BatchCursor, make_current
from eventpro.tables.changelog import GatheringTable, gathering_table
from eventpro.tables.stores import store_options

__all__ = (
    "EventTime",
    "FaustSeenStore",
    "FaustWindowStore",
    "batched",
    "event_time",
    "processor",
    "seen_table",
    "totals_table",
    "window_stores",
    "windowed_tables",
)

logger = logging.getLogger(__name__)

_settings = get_settings()
_analytics = get_analytics_settings()


class EventTime:
    """``relative_to`` handler: the ``occurred_at`` of the fact being counted.

    The agent decodes each record once and counts it inside :meth:`at`; the windowed tables
    ask this handler for the record's time instead of decoding it again.
    """

    def __init__(self) -> None:
        self._ts: float | None = None

    @contextmanager
    def at(self, ts: float) -> Iterator[None]:
        """Windowed reads and writes inside this block use event time ``ts``."""
        self._ts = ts
        try:
            yield
        finally:
            self._ts = None

    def __call__(self, event: EventT | None = None) -> float:
        if self._ts is None:
            raise RuntimeError(
                "analytics windows used outside EventTime.at(); count facts through the "
                "analytics agent"
            )
        return self._ts


event_time = EventTime()


@dataclass(frozen=True, slots=True)
class FaustWindowStore:
    """A :class:`~eventpro.analytics.processor.WindowStore` over a Faust windowed table."""

    size: int
    wrapper: WindowWrapperT

    def get(self, event_id: str, window: Window) -> WindowCounts | None:
        raw = self.wrapper.table.get((event_id, window.faust_range))
        return None if raw is None else WindowCounts.from_dict(orjson.loads(raw))

    def put(self, event_id: str, window: Window, counts: WindowCounts) -> None:
        if not window.contains(event_time()):
            raise RuntimeError(f"window {window} does not hold the event time being counted")
        self.wrapper[event_id] = orjson.dumps(counts.to_dict())


@dataclass(frozen=True, slots=True)
class FaustSeenStore:
    """A :class:`~eventpro.analytics.processor.SeenStore` over a windowed table of ids."""

    wrapper: WindowWrapperT

    def seen(self, fact: SaleFact) -> bool:
        return fact.fact_id in self.wrapper

    def remember(self, fact: SaleFact) -> None:
        self.wrapper[fact.fact_id] = b"1"


def _table(name: str, help: str, *, raw_keys: bool = False) -> GatheringTable:
    extra: dict[str, Any] = {}
    if raw_keys:
        # Faust picks JSON for str keys (right for windowed tuple keys); the totals use raw
        # keys so they hash to the same partition as the event_id record key (table_route).
        extra["changelog_topic"] = app.topic(
            f"{app.conf.id}-{name}-changelog",
            key_type=str,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=_settings.partitions,
            compacting=True,
            internal=True,
            acks=False,
            maxsize=131_072,
            allow_empty=True,
        )
    table = gathering_table(
        app,
        name,
        key_type=str,
        value_type=bytes,
        partitions=_settings.partitions,
        options=store_options(),
        help=help,
        **extra,
    )
    if raw_keys:
        table.key_serializer = "raw"
    return table


totals_table = _table(
    "sales-totals", "event_id -> EventSales (JSON): totals + watermark", raw_keys=True
)

windowed_tables: dict[int, WindowWrapperT] = {
    size: _table(f"sales-{size}s", f"(event_id, {size} s window) -> WindowCounts (JSON)")
    .tumbling(size, expires=timedelta(seconds=_analytics.expires(size)))
    .relative_to(event_time)
    for size in _analytics.windows
}

seen_table: WindowWrapperT = (
    _table("sales-seen", "(fact id, window) -> 1: facts already counted")
    .tumbling(_analytics.horizon, expires=timedelta(seconds=_analytics.horizon))
    .relative_to(event_time)
)

window_stores: dict[int, FaustWindowStore] = {
    size: FaustWindowStore(size, wrapper) for size, wrapper in windowed_tables.items()
}

processor = AnalyticsProcessor(
    totals_table,
    window_stores,
    FaustSeenStore(seen_table),
    _analytics.expires,
)
"""The analytics processor over this worker's tables (what the views read)."""

batched = BatchedAnalytics(
    totals_table,
    window_stores,
    FaustSeenStore(seen_table),
    _analytics.expires,
    cursor=BatchCursor(make_current),
    at=event_time.at,
)
"""What the agent counts with: batches over write-back overlays of the same tables."""
