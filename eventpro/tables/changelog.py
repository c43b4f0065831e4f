"""Tables whose changelog records a batch gathers and produces itself (:mod:`eventpro.produce`).

Inside :func:`gathering`, a write to a :class:`GatheringTable` still goes to its store at
once, but its changelog record is added to the given
:class:`~eventpro.produce.RecordBatches` instead of going through Faust's per-record send;
the caller sends the batches and waits for them where its ordering needs it. When the broker
acknowledges a changelog batch, the table's persisted offset for that partition is written
once (Faust writes it once per record). Outside the block the table is a plain
``faust.Table``. The same bytes go to the changelog either way: the changelog topic
serialises them as Faust's ``send_changelog`` does. :meth:`GatheringTable.store_many` writes
many keys at once: each value serialised once for the store and the changelog (recovery puts
changelog bytes into the store unchanged, so they are the same bytes), one RocksDB write
batch per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from heapq import heappop
from typing import Any

import faust
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, EventT, StoreT
from rocksdict import WriteBatch
from yarl import URL

from eventpro.produce import RecordBatches
from eventpro.tables.stores import share_memory

__all__ = ("CLEANUP_YIELD_EVERY", "GatheringTable", "gathering", "gathering_table")

CLEANUP_YIELD_EVERY = 100
"""Keys the cleanup of closed windows deletes in one write, and window timestamps it expires,
between two turns of the other tasks: about half a millisecond."""

_gathered: ContextVar[RecordBatches | None] = ContextVar("eventpro_gathered", default=None)


@contextlib.contextmanager
def gathering(batches: RecordBatches) -> Iterator[RecordBatches]:
    """Changelog records of :class:`GatheringTable` writes in this block go to ``batches``."""
    token = _gathered.set(batches)
    try:
        yield batches
    finally:
        _gathered.reset(token)


def gathering_table(app: faust.App, name: str, **kwargs: Any) -> GatheringTable:
    """``app.Table(name, **kwargs)``, as a :class:`GatheringTable`."""
    table = GatheringTable(app, name=name, beacon=app.tables.beacon, **kwargs)
    app.tables.add(table)
    return table


class GatheringTable(faust.Table):  # type: ignore[misc]
    """A ``faust.Table`` whose changelog records :func:`gathering` can take over.

    :param store_name: the name of its RocksDB files when it is not the table's (a store whose
        format changed gets a new name; see :mod:`eventpro.tables.stores`).
    """

    def __init__(self, app: faust.App, *, store_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.store_name = store_name

    def _new_store(self) -> StoreT:
        # Decided when the store opens, not at import: tests switch the app to memory://.
        url = URL(str(self._store or self.app.conf.store))
        if self.store_name is not None and url.scheme == "rocksdb" and not url.path:
            store = self._new_store_by_url(url / self.store_name)
        else:
            store = super()._new_store()
        return share_memory(store)

    def __getitem__(self, key: Any) -> Any:
        """``table[key]`` (and ``table.get``) with one store read.

        Faust's mapping asks the store ``key in`` first and then reads the key again: two key
        encodings and two RocksDB lookups for every read. Same result: the value, else the
        table's ``default``, else ``KeyError``; the read is reported to the sensors as before.
        """
        self.on_key_get(key)
        try:
            return self.data[key]
        except KeyError:
            return self.__missing__(key)

    def on_key_set(self, key: Any, value: Any) -> None:
        batches = _gathered.get()
        if batches is None:
            super().on_key_set(key, value)
            return
        partition = self._gather(batches, key, value, self.value_serializer)
        self._maybe_set_key_ttl(key, partition)
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        batches = _gathered.get()
        if batches is None:
            super().on_key_del(key)
            return
        partition = self._gather(batches, key, None, "raw")
        self._maybe_del_key_ttl(key, partition)
        self._sensor_on_del(self, key)

    async def _del_old_keys(self) -> None:
        """Faust's cleanup of closed windows (every ``table_cleanup_interval``), letting other
        tasks run after every :data:`CLEANUP_YIELD_EVERY` keys or timestamps.

        Faust's loop deletes every key of every closed window without giving up the event
        loop: the seen-fact ids of an hour's analytics window are millions of keys, and no
        agent decides anything until they are gone. Same deletions (from the store only, as
        Faust: the changelog's retention drops closed windows there), a chunk of keys per
        RocksDB write (:meth:`_delete_stored`); a table with a window-close callback keeps
        Faust's loop, which calls it.
        """
        if self._on_window_close is not None:
            await super()._del_old_keys()
            return
        window = self.window
        assert window is not None
        steps = 0
        for partition, timestamps in list(self._partition_timestamps.items()):
            while timestamps and window.stale(timestamps[0], time.time()):
                timestamp = heappop(timestamps)
                keys = list(self._partition_timestamp_keys.pop((partition, timestamp), None) or ())
                for start in range(0, len(keys), CLEANUP_YIELD_EVERY):
                    self._delete_stored(partition, keys[start : start + CLEANUP_YIELD_EVERY])
                    await asyncio.sleep(0)
                if keys:
                    self.last_closed_window = max(
                        self.last_closed_window, max(key[1][0] for key in keys)
                    )
                steps += 1  # the heap holds a timestamp per write, most without keys
                if steps % CLEANUP_YIELD_EVERY == 0:
                    await asyncio.sleep(0)

    def _delete_stored(self, partition: int, keys: Sequence[Any]) -> None:
        """Delete ``keys``, written on ``partition``, from the store: in RocksDB as one write.

        Faust's ``pop`` reads each key before deleting it, and looks for a key its small
        index of recent keys forgot in the store of every partition: ~25 µs a key with four
        partitions, 4.5 µs this way (every 30 s, the cleanup held up decisions for a tenth of
        a second or more). A partition revoked since is no longer this worker's to clean.
        """
        store = self.data
        if not isinstance(store, RocksDBStore):
            for key in keys:
                store.pop(key, None)
            return
        db = store._dbs.get(partition)
        if db is None:
            return
        batch = WriteBatch(raw_mode=True)
        for key in keys:
            batch.delete(store._encode_key(key))
        db.write(batch)

    def store_many(self, writes: Sequence[tuple[EventT, Any, Any]]) -> bool:
        """Store ``(source, key, value)`` writes and gather their changelog records, each
        value serialised once for both and one RocksDB write per partition; ``source`` is
        the record a write belongs to (its partition is the write's, as with the current
        event of ``table[key] = value``).

        ``table[key] = value`` serialises every write twice (changelog, store) and makes one
        RocksDB write each, through Faust's per-key layers. Returns ``False``, having written
        nothing, outside :func:`gathering` or when the store is not RocksDB (in memory, as in
        tests): then write key by key.
        """
        batches = _gathered.get()
        store = self.data
        if batches is None or not isinstance(store, RocksDBStore):
            return False
        topic = self.changelog_topic
        topic_name = topic.get_topic_name()
        prepare_key, prepare_value = topic.prepare_key, topic.prepare_value
        key_serializer, value_serializer = self.key_serializer, self.value_serializer
        key_index = store._key_index
        per_partition: dict[int, WriteBatch] = {}
        verify_source = self._verify_source_topic_partitions
        for source, key, value in writes:
            message = source.message
            verify_source(message.topic)
            partition = message.partition
            key_bytes, _ = prepare_key(key, key_serializer)
            value_bytes, _ = prepare_value(value, value_serializer)
            batch = per_partition.get(partition)
            if batch is None:
                batch = per_partition[partition] = WriteBatch(raw_mode=True)
            batch.put(key_bytes, value_bytes)
            key_index[key_bytes] = partition
            batches.add(topic_name, partition, key_bytes, value_bytes, self._persisted)
            self._maybe_set_key_ttl(key, partition)
            self._sensor_on_set(self, key, value)
        for partition, batch in per_partition.items():
            store._db_for_partition(partition).write(batch)
        return True

    def _gather(self, batches: RecordBatches, key: Any, value: Any, serializer: Any) -> int:
        """Add the changelog record of ``key`` to ``batches``; returns its partition (the
        current record's: the tables are co-partitioned with the streams that write them)."""
        topic = self.changelog_topic
        partition = self.partition_for_key(key)
        if partition is None:
            raise TypeError(f"table {self.name} picks partitions by key; it cannot gather")
        key_bytes, _ = topic.prepare_key(key, self.key_serializer)
        value_bytes, _ = topic.prepare_value(value, serializer)
        batches.add(topic.get_topic_name(), partition, key_bytes, value_bytes, self._persisted)
        return partition

    def _persisted(self, topic: str, partition: int, offset: int) -> None:
        """The changelog holds this partition's records up to ``offset``: remember it, so
        recovery reads only what comes after (as Faust's ``_on_changelog_sent``)."""
        self.data.set_persisted_offset(TP(topic, partition), offset)
