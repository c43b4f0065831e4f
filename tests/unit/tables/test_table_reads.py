"""GatheringTable reads: one RocksDB lookup per read, with faust.Table's results and sensors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from support.current_record import current_record

from eventpro.produce import RecordBatches
from eventpro.tables.changelog import GatheringTable, gathering, gathering_table


@contextlib.contextmanager
def _current() -> Iterator[None]:
    """Reads and writes go to partition 0; writes gather their changelog records instead of
    sending them."""
    with current_record(0), gathering(RecordBatches()):
        yield


class _LookupCounter:
    """Counts the reads that reach a RocksDB partition store."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.gets = 0

    def get(self, key: bytes) -> Any:
        self.gets += 1
        return self.db.get(key)

    def __contains__(self, key: bytes) -> bool:
        self.gets += 1
        return key in self.db

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[faust.App]:
    app = faust.App("table-reads", broker="kafka://127.0.0.1:1", store="rocksdb://")
    app.conf.tabledir = tmp_path
    yield app
    for table in app.tables.values():
        if table._data is not None:
            for db in table.data._dbs.values():
                db.close()


def _table(app: faust.App, name: str, **kwargs: Any) -> tuple[GatheringTable, _LookupCounter]:
    table = gathering_table(
        app, name, partitions=1, key_type=str, options={"driver": "rocksdict"}, **kwargs
    )
    store = table.data
    db = store._db_for_partition(0)
    counter = _LookupCounter(db)
    store._dbs[0] = counter
    return table, counter


def test_a_read_asks_the_store_once_and_returns_what_faust_would(app: faust.App) -> None:
    table, lookups = _table(app, "plain")
    with _current():
        table["ev/1"] = {"sold": 3}
        lookups.gets = 0
        assert table["ev/1"] == {"sold": 3}
        assert table.get("ev/1") == {"sold": 3}
        assert lookups.gets == 2  # Faust's mapping: `in` then a read, four lookups
        assert table.get("ev/2") is None
        assert table.get("ev/2", "fallback") == "fallback"
        with pytest.raises(KeyError):
            table["ev/2"]
        assert "ev/1" in table and "ev/2" not in table


def test_a_missing_key_gives_the_tables_default(app: faust.App) -> None:
    table, _ = _table(app, "counts", default=int)
    with _current():
        assert table["ev/9"] == 0
        assert table.get("ev/9") == 0  # as faust.Table: the default wins over get's default
        assert "ev/9" not in table  # reading a default does not store it


def test_every_read_is_reported_to_the_sensors(app: faust.App) -> None:
    reads: list[Any] = []

    class Reads(faust.Sensor):
        def on_table_get(self, table: Any, key: Any) -> None:
            reads.append((table.name, key))

    app.sensors.add(Reads())
    table, _ = _table(app, "watched")
    with _current():
        table["ev/1"] = 1
        table.get("ev/1")
        table.get("ev/2")
        with pytest.raises(KeyError):
            table["ev/3"]
    assert reads == [("watched", "ev/1"), ("watched", "ev/2"), ("watched", "ev/3")]
