"""Table stores: bounded memtables and read cache, their names, and retired stores removed."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.stores.rocksdb import RocksDBOptions
from rocksdict import Options, Rdict
from support.loop_turns import LoopTurns
from support.waiting import wait_for

from eventpro.app import app
from eventpro.settings import Settings, get_settings
from eventpro.tables import stores
from eventpro.tables.changelog import gathering_table


@pytest.fixture()
def store_url() -> Iterator[None]:
    """Restore the app's store URL after a test changed it."""
    saved = app.conf.store
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app.conf.store = saved


def _set_store(url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app.conf.store = url


def _option(path: Path, name: str) -> str:
    """A value from the OPTIONS file RocksDB writes for the store it opened."""
    [options_file] = sorted(path.glob("OPTIONS-*"))[-1:]
    match = re.search(rf"^\s*{name}=(\S+)$", options_file.read_text(), re.MULTILINE)
    assert match is not None, f"{name} not in {options_file}"
    return match.group(1)


def test_a_store_opened_with_the_options_has_their_memory_bounds(
    store_url: None, tmp_path: Path
) -> None:
    _set_store("rocksdb://")
    options = stores.store_options(ttl_seconds=60)
    settings = get_settings()
    assert options["driver"] == "rocksdict" and options["ttl"] == 60
    assert "block_cache_size" not in options  # one cache for every store: shared_memory()
    kwargs = {k: v for k, v in options.items() if k != "driver"}
    db = RocksDBOptions(**kwargs, use_rocksdict=True).open(tmp_path / "db")
    try:
        db[b"k"] = b"v"
        assert _option(tmp_path / "db", "write_buffer_size") == str(
            settings.rocksdb_write_buffer_mb << 20
        )
        assert _option(tmp_path / "db", "max_write_buffer_number") == str(stores.MAX_WRITE_BUFFERS)
    finally:
        db.close()


def test_in_memory_tables_take_no_store_options(store_url: None) -> None:
    _set_store("memory://")
    assert stores.store_options(ttl_seconds=60) == {}


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_a_store_name_names_the_files_of_a_rocksdb_table(tmp_path: Path, store: str) -> None:
    other = faust.App("store-name", broker="kafka://127.0.0.1:1", store=store, tabledir=tmp_path)
    renamed = gathering_table(other, "sent", store_name="sent-ttl", partitions=2)
    plain = gathering_table(other, "statuses", partitions=2)
    if store == "memory://":
        assert type(renamed.data) is type(plain.data)
        assert not hasattr(renamed.data, "partition_path")
        return
    assert renamed.data.partition_path(1) == tmp_path / "sent-ttl-1.db"
    assert plain.data.partition_path(1) == tmp_path / "statuses-1.db"


def test_only_the_retired_stores_files_are_removed(tmp_path: Path) -> None:
    retired = ["notifications-sent-0.db", "notifications-sent-11.db", "notifications-sent-backups"]
    kept = [
        "notifications-sent-ttl-0.db",
        "notifications-sent-ttl-backups",
        "inventory-0.db",
        "request-status-3.db",
    ]
    for name in [*retired, *kept]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "CURRENT").write_text("MANIFEST-1\n")
    removed = stores.remove_retired_stores(tmp_path)
    assert sorted(path.name for path in removed) == sorted(retired)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)
    assert stores.remove_retired_stores(tmp_path) == []  # nothing left to remove
    assert stores.remove_retired_stores(tmp_path / "missing") == []


class _Store:
    """The parts of Faust's RocksDB store :func:`stores.count_keys` reads."""

    use_rocksdict = True
    offset_key = b"__faust\0offset__"

    def __init__(self, actives: list[Rdict]) -> None:
        self.actives = actives

    def _dbs_for_actives(self) -> list[Rdict]:
        return self.actives


def _db(path: Path, keys: int) -> Rdict:
    db = Rdict(str(path), options=Options(raw_mode=True))
    for i in range(keys):
        db[f"e/{i:05}".encode()] = b"v"
    return db


async def test_keys_of_active_partitions_are_counted_in_chunks_between_loop_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stores, "COUNT_CHUNK", 100)
    first, second, standby = (
        _db(tmp_path / "0", 1_000),
        _db(tmp_path / "1", 50),
        _db(tmp_path / "2", 7),
    )
    first[_Store.offset_key] = b"999"  # Faust's offset record is not a key of the table
    try:
        for i in range(0, 1_000, 2):
            del first[f"e/{i:05}".encode()]
        first.flush()
        async with LoopTurns() as other:
            before = other.turns
            assert await stores.count_keys(_Store([first, second])) == 550
            # 500 + 1 keys in chunks of 100: the loop ran in between
            assert other.turns - before >= 5
    finally:
        for db in (first, second, standby):
            db.close()


async def test_a_store_closed_while_counting_stops_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebalance may close a partition's store between two chunks: it is not ours any more."""
    monkeypatch.setattr(stores, "COUNT_CHUNK", 100)
    revoked, kept = _db(tmp_path / "0", 1_000), _db(tmp_path / "1", 30)
    counting = asyncio.create_task(stores.count_keys(_Store([revoked, kept])))
    await asyncio.sleep(0)  # the first chunk of the first store is counted
    revoked.close()
    try:
        assert await counting == 100 + 30
    finally:
        kept.close()


async def test_other_stores_are_counted() -> None:
    assert await stores.count_keys({"a": 1, "b": 2}) == 2


def _rocksdb_table(tmp_path: Path, name: str, ttl_seconds: float | None) -> Any:
    """A real Faust RocksDB table store with both partitions open and 200 keys in each."""
    other = faust.App(name, broker="kafka://127.0.0.1:1", store="rocksdb://", tabledir=tmp_path)
    table = gathering_table(
        other,
        name,
        partitions=2,
        options={**stores.store_options(), **({"ttl": ttl_seconds} if ttl_seconds else {})},
    )
    store = table.data
    for partition in (0, 1):
        db = store._db_for_partition(partition)
        for i in range(200):
            db[f"e/{i:05}".encode()] = b"v"
    return store


def _keys(store: Any) -> int:
    return sum(len(list(db.keys())) for db in store._dbs.values())


async def test_compacting_a_ttl_store_drops_its_expired_keys_from_every_partition(
    store_url: None, tmp_path: Path
) -> None:
    """RocksDB alone compacts only once files pile up: without this the keys would stay."""
    _set_store("rocksdb://")
    store = _rocksdb_table(tmp_path, "expiring", ttl_seconds=1)
    try:
        assert _keys(store) == 400

        async def expired_keys_gone() -> bool:
            assert await stores.compact_expired(store) == 2
            return _keys(store) == 0

        await wait_for(expired_keys_gone, 10.0, "the expired keys to be compacted away")
    finally:
        for db in store._dbs.values():
            db.close()


async def test_compacting_keeps_live_keys_and_leaves_stores_without_a_ttl_alone(
    store_url: None, tmp_path: Path
) -> None:
    _set_store("rocksdb://")
    live = _rocksdb_table(tmp_path / "live", "live", ttl_seconds=3600)
    lasting = _rocksdb_table(tmp_path / "lasting", "lasting", ttl_seconds=None)
    try:
        assert await stores.compact_expired(live) == 2
        assert await stores.compact_expired(lasting) == 0
        assert await stores.compact_expired({"in": "memory"}) == 0
        assert (_keys(live), _keys(lasting)) == (400, 400)
    finally:
        for db in [*live._dbs.values(), *lasting._dbs.values()]:
            db.close()


async def test_a_store_closed_before_its_compaction_is_skipped(
    store_url: None, tmp_path: Path
) -> None:
    _set_store("rocksdb://")
    store = _rocksdb_table(tmp_path, "closing", ttl_seconds=3600)
    store._dbs[0].close()
    try:
        assert await stores.compact_expired(store) == 1
    finally:
        store._dbs[1].close()


def test_ttl_stores_are_compacted_at_half_the_dedup_ttl_at_least_hourly() -> None:
    half_the_ttl = get_settings().dedup_ttl_seconds / 2
    interval = stores.COMPACTION_INTERVAL_SECONDS
    assert interval == min(3600.0, max(1.0, half_the_ttl))
    assert stores.compact_expiring_stores in app._app_tasks  # a worker starts it


async def test_each_round_of_the_timer_compacts_every_table_of_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compacted: list[Any] = []

    async def record(store: Any) -> int:
        compacted.append(store)
        return 1

    monkeypatch.setattr(stores, "compact_expired", record)
    await inspect.unwrap(stores.compact_expiring_stores)()  # one round, without the interval
    assert compacted == [table.data for table in app.tables.values()]
    assert any(table.name == "request-status" for table in app.tables.values())


def test_every_store_of_the_worker_shares_one_cache_that_its_memtables_are_charged_to(
    store_url: None, tmp_path: Path
) -> None:
    """A bound per store would grow with the partitions a worker holds; this one does not."""
    _set_store("rocksdb://")
    lasting = _rocksdb_table(tmp_path / "lasting", "lasting-shared", ttl_seconds=None)
    expiring = _rocksdb_table(tmp_path / "expiring", "expiring-shared", ttl_seconds=3600)
    cache, write_buffers = stores.shared_memory()
    budget = get_settings().rocksdb_memory_mb << 20
    dbs = [*lasting._dbs.values(), *expiring._dbs.values()]
    try:
        assert {type(s.rocksdb_options) for s in (lasting, expiring)} == {
            stores.SharedMemoryOptions
        }
        before = cache.get_usage()
        for i in range(5_000):
            dbs[0][f"big/{i:05}".encode()] = b"x" * 200
        assert write_buffers.get_buffer_size() == budget // 2
        assert write_buffers.get_usage() > 0
        assert cache.get_usage() > before  # the memtable is charged to the shared cache
        for db in dbs:
            assert db.property_int_value("rocksdb.block-cache-capacity") == budget
            assert db.property_int_value("rocksdb.block-cache-usage") == cache.get_usage()
    finally:
        for db in dbs:
            db.close()


def test_the_retired_per_store_cache_setting_is_named_in_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EVENTPRO_ROCKSDB_BLOCK_CACHE_MB", "8")
    monkeypatch.setattr(stores, "get_settings", Settings)  # read the environment again
    stores.shared_memory.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=stores.__name__):
            stores.shared_memory()
        assert "EVENTPRO_ROCKSDB_BLOCK_CACHE_MB is no longer read" in caplog.text
        assert "EVENTPRO_ROCKSDB_MEMORY_MB" in caplog.text
    finally:
        stores.shared_memory.cache_clear()  # the next store makes the worker's own again


def test_memory_stores_are_left_as_they_are() -> None:
    other = faust.App("in-memory", broker="kafka://127.0.0.1:1", store="memory://")
    table = gathering_table(other, "plain", partitions=2)
    assert not hasattr(table.data, "rocksdb_options")


def test_index_and_filter_blocks_are_charged_to_the_shared_cache(
    store_url: None, tmp_path: Path
) -> None:
    """Otherwise each file's stay in memory beside the cache, outside the worker's budget."""
    _set_store("rocksdb://")
    store = _rocksdb_table(tmp_path, "indexed", ttl_seconds=None)
    try:
        path = store.partition_path(0)
        assert _option(path, "cache_index_and_filter_blocks") == "true"
        assert _option(path, "pin_l0_filter_and_index_blocks_in_cache") == "true"
    finally:
        for db in store._dbs.values():
            db.close()


async def test_counting_keys_leaves_the_read_cache_to_the_agents(
    store_url: None, tmp_path: Path
) -> None:
    """A scrape counts every key: reading them through the cache would fill it with every
    block of every store (a scan as Faust's ``len`` does it is the control)."""
    _set_store("rocksdb://")
    store = _rocksdb_table(tmp_path, "counted", ttl_seconds=None)
    db = store._dbs[0]
    cache, _ = stores.shared_memory()
    try:
        for i in range(20_000):
            db[f"k/{i:06}".encode()] = b"x" * 100
        db.flush()
        before = cache.get_usage()
        assert await stores.count_keys(_Store([db])) == 20_200
        assert cache.get_usage() - before < 100_000
        assert len(list(db.keys())) == 20_200
        assert cache.get_usage() - before > 1_000_000  # every data block read went into it
    finally:
        for opened in store._dbs.values():
            opened.close()
