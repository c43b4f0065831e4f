"""GatheringTable.store_many: the same store bytes and changelog records as ``table[key] =
value``, one RocksDB write per partition, on plain and TTL stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from support.current_record import RecordEvent, current_record

from eventpro.produce import RecordBatches
from eventpro.tables.changelog import GatheringTable, gathering, gathering_table


@pytest.fixture(params=[None, 3600], ids=["plain", "ttl"])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two tables of the same kind on RocksDB: one written key by key, one with store_many."""
    options = {"driver": "rocksdict"}
    if request.param is not None:
        options["ttl"] = request.param
    app = faust.App("store-many", broker="kafka://127.0.0.1:1", store="rocksdb://")
    app.conf.tabledir = tmp_path
    by_key = gathering_table(app, "by-key", partitions=2, options=options)
    many = gathering_table(app, "many", partitions=2, options=options)
    yield by_key, many
    for table in (by_key, many):
        for db in table.data._dbs.values():
            db.close()


def _stored(table: GatheringTable, partition: int) -> dict[bytes, bytes]:
    db = table.data._db_for_partition(partition)
    return {key: value for key, value in db.items() if key != b"__faust\0offset__"}


def _records(batches: RecordBatches, table: GatheringTable) -> list[tuple[Any, ...]]:
    topic = table.changelog_topic.get_topic_name()
    return [
        (partition, key, value) for name, partition, key, value in batches._records if name == topic
    ]


def test_store_many_stores_and_gathers_what_key_by_key_writes_do(
    tables: tuple[GatheringTable, GatheringTable],
) -> None:
    by_key, many = tables
    writes = [(0, "ev/1", {"sold": 3}), (1, "ev/2", {"sold": 0}), (0, "ev/3", {"sold": 9})]
    by_key_batches, many_batches = RecordBatches(), RecordBatches()
    with gathering(by_key_batches):
        for partition, key, value in writes:
            with current_record(partition):
                by_key[key] = value
    with gathering(many_batches):
        assert many.store_many([(RecordEvent(p), key, value) for p, key, value in writes]) is True
    for partition in (0, 1):
        assert _stored(many, partition) == _stored(by_key, partition)
        assert _stored(many, partition)  # something landed in each partition
    assert _records(many_batches, many) == _records(by_key_batches, by_key)
    assert len(_records(many_batches, many)) == len(writes)
    # Faust reads it back like any other write (a TTL store strips its timestamps).
    with current_record(0):
        assert many["ev/3"] == {"sold": 9}


def test_outside_gathering_store_many_writes_nothing(
    tables: tuple[GatheringTable, GatheringTable],
) -> None:
    _, many = tables
    assert many.store_many([(RecordEvent(0), "ev/1", {"sold": 1})]) is False
    assert _stored(many, 0) == {}


def test_an_in_memory_table_is_written_key_by_key(tmp_path: Path) -> None:
    app = faust.App("store-many-memory", broker="kafka://127.0.0.1:1", store="memory://")
    table = gathering_table(app, "memory", partitions=2)
    with gathering(RecordBatches()):
        assert table.store_many([(RecordEvent(0), "ev/1", {"sold": 1})]) is False
    assert dict(table.data.items()) == {}
