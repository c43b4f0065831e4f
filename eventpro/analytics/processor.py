"""Counting one sale fact into the totals and the tumbling windows, without Faust.

:class:`AnalyticsProcessor` works over small store interfaces: the Faust windowed tables in the
worker (:mod:`eventpro.analytics.tables`), dictionaries in tests. Per fact, in this order:

1. a fact whose id was counted already (a redelivered record) changes nothing;
2. each window size counts it unless its window expired against the event's watermark
   (a record late beyond expiry is dropped from that size only);
3. the all-time totals count it and the watermark moves forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from eventpro.analytics.facts import EventSales, SaleFact, WindowCounts
from eventpro.analytics.windows import Window, accepts, recent_windows, window_of

__all__ = (
    "AnalyticsProcessor",
    "Counted",
    "DictSeenStore",
    "DictWindowStore",
    "SeenStore",
    "WindowStore",
)

logger = logging.getLogger(__name__)


class WindowStore(Protocol):
    """Per-event counts of one window size."""

    size: int

    def get(self, event_id: str, window: Window) -> WindowCounts | None:
        """The counts of ``event_id`` in ``window`` (``None``: nothing counted)."""
        ...

    def put(self, event_id: str, window: Window, counts: WindowCounts) -> None:
        """Store the counts of ``event_id`` in ``window``."""
        ...


class SeenStore(Protocol):
    """Ids of facts already counted."""

    def seen(self, fact: SaleFact) -> bool:
        """Whether ``fact`` was counted before."""
        ...

    def remember(self, fact: SaleFact) -> None:
        """Record that ``fact`` is counted."""
        ...


@dataclass
class DictWindowStore:
    """A :class:`WindowStore` over a dict (tests, tools)."""

    size: int
    data: dict[tuple[str, float], WindowCounts]

    def get(self, event_id: str, window: Window) -> WindowCounts | None:
        return self.data.get((event_id, window.start))

    def put(self, event_id: str, window: Window, counts: WindowCounts) -> None:
        self.data[(event_id, window.start)] = counts


@dataclass
class DictSeenStore:
    """A :class:`SeenStore` over a set (tests, tools)."""

    ids: set[str]

    def seen(self, fact: SaleFact) -> bool:
        return fact.fact_id in self.ids

    def remember(self, fact: SaleFact) -> None:
        self.ids.add(fact.fact_id)


@dataclass(frozen=True, slots=True)
class Counted:
    """What happened to one fact: ``duplicate``, or counted with ``late_sizes`` skipped."""

    duplicate: bool
    late_sizes: tuple[int, ...] = ()


class AnalyticsProcessor:
    """Counts facts into ``totals`` (event_id -> JSON :class:`EventSales`) and ``windows``.

    :param expires: seconds a window of a given size is kept (``AnalyticsSettings.expires``).
    """

    def __init__(
        self,
        totals: MutableMapping[str, bytes],
        windows: Mapping[int, WindowStore],
        seen: SeenStore,
        expires: Callable[[int], float],
    ) -> None:
        self.totals = totals
        self.windows = windows
        self.seen = seen
        self.expires = expires

    def sales(self, event_id: str) -> EventSales | None:
        """All-time counts and watermark of an event (``None``: nothing counted here)."""
        raw = self.totals.get(event_id)
        return None if raw is None else EventSales.from_dict(orjson.loads(raw))

    def handle(self, fact: SaleFact) -> Counted:
        """Count ``fact`` once."""
        if self.seen.seen(fact):
            return Counted(duplicate=True)
        sales = self.sales(fact.event_id) or EventSales()
        late: list[int] = []
        for size, store in self.windows.items():
            if not accepts(fact.occurred_at, sales.watermark, size, self.expires(size)):
                late.append(size)
                continue
            window = window_of(fact.occurred_at, size)
            current = store.get(fact.event_id, window) or WindowCounts()
            store.put(fact.event_id, window, current.add(fact))
        self.totals[fact.event_id] = orjson.dumps(sales.add(fact).to_dict())
        self.seen.remember(fact)
        if late:
            logger.info(
                "fact %s of event %s at %.3f is late beyond expiry for %s s windows",
                fact.fact_id,
                fact.event_id,
                fact.occurred_at,
                ",".join(map(str, late)),
            )
        return Counted(duplicate=False, late_sizes=tuple(late))

    def windows_of(self, event_id: str, size: int) -> list[tuple[Window, WindowCounts]]:
        """The event's unexpired ``size`` windows from its first counted one, in time order.

        Windows between counted ones appear with zero counts so a chart has no gaps.

        :raises KeyError: ``size`` is not a configured window size.
        """
        store = self.windows[size]
        sales = self.sales(event_id)
        if sales is None or sales.watermark is None:
            return []
        rows = [
            (window, store.get(event_id, window))
            for window in recent_windows(sales.watermark, size, self.expires(size))
        ]
        first = next((i for i, (_, counts) in enumerate(rows) if counts is not None), None)
        if first is None:
            return []
        return [(window, counts or WindowCounts()) for window, counts in rows[first:]]
