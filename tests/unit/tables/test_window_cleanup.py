"""The cleanup of closed windows deletes what Faust's does and lets other tasks run meanwhile."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import faust
from support.current_record import current_record
from support.loop_turns import LoopTurns

from eventpro.produce import RecordBatches
from eventpro.tables.changelog import (
    CLEANUP_YIELD_EVERY,
    GatheringTable,
    gathering,
    gathering_table,
)

CLOSED = (0.0, 9.9)
"""A 10 s window of 1970: long stale."""


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """Writes go to partition 0 and gather their changelog records (no producer needed)."""
    with current_record(0, "reservations"), gathering(RecordBatches()):
        yield


def _windowed(name: str) -> GatheringTable:
    app = faust.App(f"cleanup-{name}", broker="kafka://127.0.0.1:1", store="memory://")
    wrapper = gathering_table(app, name, partitions=1, key_type=str).tumbling(
        10, expires=timedelta(seconds=10)
    )
    table = wrapper.table
    assert isinstance(table, GatheringTable)
    return table


def _write(table: GatheringTable, keys: range, window: tuple[float, float]) -> None:
    with _writing():
        for i in keys:
            table[(f"fact-{i}", window)] = b"1"


def _stored(table: GatheringTable) -> set[Any]:
    return set(table.data.keys())


async def test_a_closed_window_is_deleted_and_an_open_one_kept() -> None:
    table = _windowed("kept")
    now = float(int(time.time()))
    recent = (now, now + 9.9)  # the current window: not stale
    _write(table, range(3), CLOSED)
    _write(table, range(3, 5), recent)
    await table._del_old_keys()
    assert _stored(table) == {("fact-3", recent), ("fact-4", recent)}
    assert table.last_closed_window == CLOSED[0]


async def test_other_tasks_run_while_a_large_window_is_deleted() -> None:
    table = _windowed("large")
    keys = 10 * CLEANUP_YIELD_EVERY
    _write(table, range(keys), CLOSED)
    async with LoopTurns() as other:
        before = other.turns
        await table._del_old_keys()
        during = other.turns - before
    assert _stored(table) == set()
    # Faust's own loop never yields: the other task would not have run at all meanwhile
    assert during >= keys // CLEANUP_YIELD_EVERY
