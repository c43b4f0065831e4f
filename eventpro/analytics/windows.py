"""Tumbling-window arithmetic, pure, in event time (seconds since the epoch).

A window of ``size`` seconds covers ``[start, start + size)`` with ``start`` a multiple of
``size``; a record exactly on an edge opens the next window. Faust stores a window under
``(start, start + size - 0.1)`` (:func:`faust_range`); these functions agree with
``faust.TumblingWindow`` and are what the analytics agent and views use to name windows.

Lateness is judged against a *watermark*, the newest event time seen for the event: a window
has expired once it ends at or before the start of the window that holds
``watermark - expires`` (Faust's ``Window.stale`` rule), and a record whose window has expired
is dropped. Because the watermark is stored with the totals, a replay makes the same choices.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

__all__ = (
    "Window",
    "accepts",
    "faust_range",
    "is_expired",
    "recent_windows",
    "window_of",
    "window_start",
)

logger = logging.getLogger(__name__)

FAUST_END_OFFSET = 0.1
"""Faust closes a window range at ``start + size - 0.1``."""


def window_start(ts: float, size: int) -> float:
    """Start of the ``size``-second tumbling window holding ``ts``.

    :raises ValueError: ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"window size must be a whole number of seconds >= 1, got {size}")
    return float(math.floor(ts / size) * size)


def faust_range(start: float, size: int) -> tuple[float, float]:
    """The ``(start, end)`` key Faust uses for the window starting at ``start``."""
    return (start, start + size - FAUST_END_OFFSET)


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One tumbling window: ``[start, start + size)`` in epoch seconds."""

    start: float
    size: int

    @property
    def end(self) -> float:
        """Exclusive end."""
        return self.start + self.size

    def contains(self, ts: float) -> bool:
        """Whether ``ts`` falls in this window."""
        return self.start <= ts < self.end

    @property
    def faust_range(self) -> tuple[float, float]:
        """The key Faust stores this window under."""
        return faust_range(self.start, self.size)


def window_of(ts: float, size: int) -> Window:
    """The window of ``size`` seconds that holds ``ts``."""
    return Window(window_start(ts, size), size)


def is_expired(window: Window, watermark: float, expires: float) -> bool:
    """Whether ``window`` is gone once records up to ``watermark`` have been seen."""
    if expires <= 0:
        return False
    return window.end <= window_start(watermark - expires, window.size)


def accepts(ts: float, watermark: float | None, size: int, expires: float) -> bool:
    """Whether a record at ``ts`` still counts in a ``size`` window (not late beyond expiry).

    ``watermark`` is the newest event time seen before this record (``None``: first record).
    """
    if watermark is None or ts >= watermark:
        return True
    return not is_expired(window_of(ts, size), watermark, expires)


def recent_windows(watermark: float, size: int, expires: float) -> list[Window]:
    """Every unexpired window up to the one holding ``watermark``, oldest first."""
    newest = window_of(watermark, size)
    out: list[Window] = []
    window = newest
    while not is_expired(window, watermark, expires):
        out.append(window)
        window = Window(window.start - size, size)
        if window.start < 0:
            break
    out.reverse()
    return out
