"""Store options shared by every EventPro table: one place for how RocksDB is configured.

Each table partition is its own RocksDB store (tables x partitions, plus standbys), and Faust's
defaults give each one 64 MiB memtables (up to 3) and a 2 GiB block cache: a worker's memory
then grows with the data written, by up to gigabytes, and a bound per store would still grow
with the partitions a worker holds. So every store of a worker shares one read cache of
``EVENTPRO_ROCKSDB_MEMORY_MB``, and their memtables are charged to that cache too (a write
buffer manager flushes the largest early once they hold half of it), and so are the index and
filter blocks of their files: RocksDB's memory has one ceiling however many stores are open and
however much they hold (:class:`SharedMemoryOptions`). A memtable is flushed at
``EVENTPRO_ROCKSDB_WRITE_BUFFER_MB`` at the latest; older data lives in the stores' files.

A table whose changelog forgets keys after a retention also opens its store with that TTL, so
RocksDB's compactions drop them locally. RocksDB compacts a store only once enough files piled
up, which a store taking a few megabytes a day may not reach for weeks: expired keys would stay
on disk and in the key counts. So every worker compacts its TTL stores itself, every
:data:`COMPACTION_INTERVAL_SECONDS` (:func:`compact_expired`), in a thread beside the event
loop; expired keys are gone at most that long after they expire.

A store cannot switch to a TTL in place (RocksDB's TTL stores append a timestamp to every value
and would misread values written without one), so such a table gets a store of another name
(``store_name`` of :class:`~eventpro.tables.changelog.GatheringTable`) and the files of its
earlier store are deleted at worker start (:func:`remove_retired_stores`); the new store is
rebuilt from the changelog like any empty one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import shutil
import time
from itertools import islice
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import StoreT
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DbClosedError,
    Options,
    ReadOptions,
    WriteBufferManager,
)

from eventpro.app import app
from eventpro.settings import get_settings

__all__ = (
    "COMPACTION_INTERVAL_SECONDS",
    "COUNT_CHUNK",
    "MAX_WRITE_BUFFERS",
    "RETIRED_STORES",
    "SharedMemoryOptions",
    "compact_expired",
    "compact_expiring_stores",
    "count_keys",
    "remove_retired_stores",
    "share_memory",
    "shared_memory",
    "store_options",
)

logger = logging.getLogger(__name__)

MAX_WRITE_BUFFERS = 2
"""Memtables a store keeps: one taking writes, one being flushed to disk."""

RETIRED_STORES: tuple[str, ...] = ("notifications-sent",)
"""Store names an earlier EventPro wrote that no table opens any more (``notifications-sent``
had no TTL; its table now uses ``notifications-sent-ttl``)."""

COUNT_CHUNK = 2_000
"""Keys :func:`count_keys` reads between two turns of the event loop (~0.7 ms)."""

COMPACTION_INTERVAL_SECONDS = min(3600.0, max(1.0, get_settings().dedup_ttl_seconds / 2))
"""How often TTL stores are compacted: half the dedup TTL (the TTL of every such store), at
least once an hour. Each compaction rewrites the store, so not more often than it needs."""

_SCAN = ReadOptions()
_SCAN.fill_cache(False)
"""Reads of a scan of every key (:func:`count_keys`): they leave the read cache to the agents'
reads instead of filling it with every block of the store."""

_STORE_FILES = re.compile(r"(?P<name>.+)-(?:\d+\.db|backups)")
"""A table store's files in the tabledir: ``<name>-<partition>.db`` and ``<name>-backups``."""


def store_options(ttl_seconds: float | None = None) -> dict[str, Any]:
    """The ``options`` of a table: rocksdict with bounded memory (none for ``memory://``)."""
    if app.conf.store.scheme != "rocksdb":
        return {}
    settings = get_settings()
    options: dict[str, Any] = {
        "driver": "rocksdict",
        "write_buffer_size": settings.rocksdb_write_buffer_mb << 20,
        "max_write_buffer_number": MAX_WRITE_BUFFERS,
    }
    if ttl_seconds is not None:
        options["ttl"] = int(ttl_seconds)
    return options


@functools.cache
def shared_memory() -> tuple[Cache, WriteBufferManager]:
    """The read cache every store of this process shares and the manager that charges their
    memtables to it, made at the first store opened."""
    settings = get_settings()
    if settings.rocksdb_block_cache_mb is not None:
        logger.warning(
            "EVENTPRO_ROCKSDB_BLOCK_CACHE_MB is no longer read: the table stores share one "
            "cache of EVENTPRO_ROCKSDB_MEMORY_MB (%d MiB)",
            settings.rocksdb_memory_mb,
        )
    budget = settings.rocksdb_memory_mb << 20
    cache = Cache(budget)
    # No stall: writes run on the event loop; past the budget RocksDB flushes early instead.
    return cache, WriteBufferManager.new_write_buffer_manager_with_cache(budget // 2, False, cache)


class SharedMemoryOptions(RocksDBOptions):  # type: ignore[misc]
    """Faust's options of a rocksdict store, with the worker's :func:`shared_memory` in place
    of a read cache of the store's own."""

    def as_options(self) -> Options:
        options = super().as_options()
        cache, write_buffers = shared_memory()
        table_options = BlockBasedOptions()  # Faust's, but for the cache
        table_options.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table_options.set_index_type(BlockBasedIndexType.binary_search())
        table_options.set_block_cache(cache)
        # Index and filter blocks in the cache too, or each file's stay in memory beside it
        # for as long as the file lives; those of the newest files are kept there.
        table_options.set_cache_index_and_filter_blocks(True)
        table_options.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table_options)
        options.set_write_buffer_manager(write_buffers)
        return options


def share_memory(store: StoreT) -> StoreT:
    """``store``, made to open its partitions with :class:`SharedMemoryOptions` if it is a
    rocksdict store (called as each table makes its store; nothing is open yet)."""
    if isinstance(store, RocksDBStore) and store.use_rocksdict:
        store.rocksdb_options = SharedMemoryOptions(**store.options, use_rocksdict=True)
    return store


async def count_keys(store: Any) -> int:
    """How many keys ``store`` (a table's ``data``) holds for this worker's active partitions.

    Faust's ``len`` of a RocksDB store reads every key in one go on the event loop: ~70 ms
    per 200,000 keys, at every Prometheus scrape, while decisions wait. This reads them
    :data:`COUNT_CHUNK` at a time and lets the loop run in between, without putting what it
    reads in the read cache (a scrape would fill it every time). Each chunk takes a fresh
    iterator, so none is held while a rebalance closes a store; a store closed meanwhile is
    no longer this worker's and stops counting. Other stores are counted at once.
    """
    if not getattr(store, "use_rocksdict", False):
        return len(store)
    offset_key = store.offset_key
    keys = 0
    for db in list(store._dbs_for_actives()):
        start: bytes | None = None
        while True:
            try:
                chunk = list(islice(db.keys(from_key=start, read_opt=_SCAN), COUNT_CHUNK))
            except DbClosedError:
                break
            keys += sum(1 for key in chunk if key != offset_key)
            if len(chunk) < COUNT_CHUNK:
                break
            start = chunk[-1] + b"\0"  # the first key after the last one counted
            await asyncio.sleep(0)
    return keys


def remove_retired_stores(tabledir: Path) -> list[Path]:
    """Delete the files of :data:`RETIRED_STORES` in ``tabledir``; returns what was deleted.

    Run before the tables open (worker start): their tables rebuild the replacements from
    the changelogs.
    """
    if not tabledir.is_dir():
        return []
    removed = []
    for path in sorted(tabledir.iterdir()):
        match = _STORE_FILES.fullmatch(path.name)
        if match is None or match["name"] not in RETIRED_STORES:
            continue
        logger.info("removing %s: a table store no table opens any more", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


async def compact_expired(store: Any) -> int:
    """Compact every partition of ``store`` if it is a RocksDB store with a TTL, dropping its
    expired keys; returns how many partition stores were compacted.

    RocksDB compacts in its own threads (about 50 ms per 100,000 keys) without holding the GIL,
    so this runs beside the event loop. A partition revoked meanwhile keeps its store open until
    its compaction ends (Faust drops a revoked store without closing it, and retries opening a
    locked one); a store closed meanwhile is skipped.
    """
    options = getattr(store, "rocksdb_options", None)
    if not getattr(store, "use_rocksdict", False) or getattr(options, "ttl", None) is None:
        return 0
    compacted = 0
    for db in list(store._dbs.values()):
        try:
            await asyncio.to_thread(db.compact_range, None, None)
        except DbClosedError:
            continue
        compacted += 1
    return compacted


@app.timer(COMPACTION_INTERVAL_SECONDS, name="eventpro.tables.compact-expiring")
async def compact_expiring_stores() -> None:
    """Drop the expired keys of this worker's TTL stores (:func:`compact_expired`)."""
    started = time.monotonic()
    compacted = 0
    for table in list(app.tables.values()):
        compacted += await compact_expired(table.data)
    logger.debug("compacted %d TTL stores in %.3f s", compacted, time.monotonic() - started)
