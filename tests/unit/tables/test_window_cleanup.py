"""The cleanup of closed windows deletes what Faust's does and lets other tasks run meanwhile."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
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
def _writing(partition: int = 0) -> Iterator[None]:
    """Writes go to ``partition`` and gather their changelog records (no producer needed)."""
    with current_record(partition, "reservations"), gathering(RecordBatches()):
        yield


def _windowed(name: str, store: str = "memory://", partitions: int = 1) -> GatheringTable:
    app = faust.App(f"cleanup-{name}", broker="kafka://127.0.0.1:1", store=store)
    options = {"driver": "rocksdict"} if store.startswith("rocksdb") else None
    wrapper = gathering_table(
        app, name, partitions=partitions, key_type=str, options=options
    ).tumbling(10, expires=timedelta(seconds=10))
    table = wrapper.table
    assert isinstance(table, GatheringTable)
    return table


def _write(
    table: GatheringTable, keys: range, window: tuple[float, float], partition: int = 0
) -> None:
    with _writing(partition):
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


async def test_rocksdb_deletes_closed_windows_in_each_partition_and_keeps_open_ones(
    tmp_path: Path,
) -> None:
    table = _windowed("partitions", store=f"rocksdb://{tmp_path}", partitions=2)
    now = float(int(time.time()))
    recent = (now, now + 9.9)
    _write(table, range(0, 250), CLOSED, partition=0)
    _write(table, range(250, 400), CLOSED, partition=1)
    _write(table, range(400, 403), recent, partition=1)
    store = table.data
    try:
        assert _rocksdb_keys(store) == {0: 250, 1: 153}
        await table._del_old_keys()
        assert _rocksdb_keys(store) == {0: 0, 1: 3}
        with current_record(1, "reservations"):
            assert ("fact-400", recent) in table
            assert ("fact-300", CLOSED) not in table
    finally:
        for db in store._dbs.values():
            db.close()


async def test_a_partition_revoked_before_the_cleanup_is_left_alone(tmp_path: Path) -> None:
    """Its store is no longer this worker's: the cleanup does not open it again."""
    table = _windowed("revoked", store=f"rocksdb://{tmp_path}", partitions=2)
    _write(table, range(10), CLOSED, partition=0)
    _write(table, range(10, 20), CLOSED, partition=1)
    store = table.data
    revoked = store._dbs.pop(1)
    try:
        await table._del_old_keys()
        assert set(store._dbs) == {0}
        assert _rocksdb_keys(store) == {0: 0}
        assert len(list(revoked.keys())) == 10
    finally:
        for db in [revoked, *store._dbs.values()]:
            db.close()


class _CountingDb:
    """A real partition store that counts the calls the cleanup makes on it."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self.db, name)


async def test_the_keys_of_a_closed_window_go_in_one_write_per_chunk_without_reads(
    tmp_path: Path,
) -> None:
    """Faust's ``pop`` read every key and deleted it on its own: ~25 µs a key."""
    table = _windowed("chunks", store=f"rocksdb://{tmp_path}", partitions=1)
    keys = 2 * CLEANUP_YIELD_EVERY + 50
    _write(table, range(keys), CLOSED)
    store = table.data
    real = store._dbs[0]
    counting = store._dbs[0] = _CountingDb(real)
    try:
        await table._del_old_keys()
        assert counting.calls == Counter(write=3)  # 100 + 100 + 50 keys, nothing read
        assert _rocksdb_keys(store) == {0: 0}
    finally:
        real.close()


def _rocksdb_keys(store: Any) -> dict[int, int]:
    """Keys in each open partition's RocksDB store, besides Faust's offset record."""
    return {
        partition: len([key for key in list(db.keys()) if key != store.offset_key])
        for partition, db in store._dbs.items()
    }
