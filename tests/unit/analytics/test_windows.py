"""Window maths at the edges, and agreement with Faust's own TumblingWindow."""

from __future__ import annotations

import pytest
from faust.windows import TumblingWindow
from hypothesis import given
from hypothesis import strategies as st

from eventpro.analytics.windows import (
    Window,
    accepts,
    faust_range,
    is_expired,
    recent_windows,
    window_of,
    window_start,
)

T0 = 1_700_000_040.0  # a multiple of 10 and of 60


@pytest.mark.parametrize(
    ("ts", "size", "start"),
    [
        (T0, 10, T0),  # exactly on an edge: opens the window
        (T0 + 9.999, 10, T0),  # just before the next edge
        (T0 + 10.0, 10, T0 + 10),  # next edge: next window
        (T0 - 0.001, 10, T0 - 10),  # just before the edge: previous window
        (T0 + 59.95, 60, T0),  # inside Faust's 0.1 s gap before the range end
        (T0 + 60, 60, T0 + 60),
    ],
)
def test_window_start_at_edges(ts: float, size: int, start: float) -> None:
    assert window_start(ts, size) == start
    assert window_of(ts, size).contains(ts)
    assert not window_of(ts, size).contains(start + size)


def test_window_start_rejects_sizes_below_one_second() -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        window_start(T0, 0)


@given(
    # Faust's compiled windows loop forever past 2**31 s (year 2038), so stay below it.
    ts=st.floats(min_value=1.0, max_value=2_100_000_000.0, allow_nan=False),
    size=st.sampled_from([1, 5, 10, 60, 300]),
)
def test_matches_faust_tumbling_ranges(ts: float, size: int) -> None:
    (faust,) = TumblingWindow(size).ranges(ts)
    assert window_of(ts, size).faust_range == faust
    assert faust_range(window_start(ts, size), size) == faust


@given(
    start_index=st.integers(min_value=0, max_value=200),
    latest=st.floats(min_value=0.0, max_value=4000.0, allow_nan=False),
    size=st.sampled_from([1, 10, 60]),
    history=st.integers(min_value=1, max_value=20),
)
def test_expiry_matches_faust_stale(
    start_index: int, latest: float, size: int, history: int
) -> None:
    base = 1_000_000.0
    window = Window(base + start_index * size, size)
    expires = size * history
    faust = TumblingWindow(size, expires=expires)
    assert is_expired(window, base + latest, expires) == faust.stale(
        window.faust_range[1], base + latest
    )


def test_expiry_boundary() -> None:
    # 10 s windows kept for 60 s after the watermark's window.
    watermark = T0 + 100.0
    assert not is_expired(Window(T0 + 40, 10), watermark, 60)  # [40, 50) is kept
    assert is_expired(Window(T0 + 30, 10), watermark, 60)  # ends at 40 = start of wm - 60
    assert not is_expired(Window(T0 + 30, 10), watermark - 0.001, 60)


def test_late_records_within_and_beyond_expiry() -> None:
    watermark = T0 + 100.0
    assert accepts(T0 + 100.0, None, 10, 60)  # first record
    assert accepts(T0 + 200.0, watermark, 10, 60)  # newer than the watermark
    assert accepts(T0 + 99.0, watermark, 10, 60)  # slightly late: same window
    assert accepts(T0 + 40.0, watermark, 10, 60)  # late, in the oldest kept window
    assert not accepts(T0 + 39.999, watermark, 10, 60)  # late beyond expiry
    assert accepts(T0 + 39.999, watermark, 60, 3600)  # ... but a long window still has it


def test_recent_windows_are_contiguous_and_end_at_the_watermark() -> None:
    windows = recent_windows(T0 + 105.0, 10, 60)
    assert [w.start - T0 for w in windows] == [40, 50, 60, 70, 80, 90, 100]
    assert windows[-1].contains(T0 + 105.0)
    assert all(not is_expired(w, T0 + 105.0, 60) for w in windows)
    assert is_expired(Window(windows[0].start - 10, 10), T0 + 105.0, 60)
