"""Store options shared by every EventPro table: one place for how RocksDB is configured.

Each table partition is its own RocksDB store (tables x partitions, plus standbys), and Faust's
defaults give each one 64 MiB memtables (up to 3) and a 2 GiB block cache: a worker's memory
then grows with the data written, by up to gigabytes. EventPro bounds both per store
(``EVENTPRO_ROCKSDB_WRITE_BUFFER_MB``, ``EVENTPRO_ROCKSDB_BLOCK_CACHE_MB``); older data lives
in the stores' files on disk.
"""

from __future__ import annotations

from typing import Any

from eventpro.app import app
from eventpro.settings import get_settings

__all__ = ("MAX_WRITE_BUFFERS", "store_options")

MAX_WRITE_BUFFERS = 2
"""Memtables a store keeps: one taking writes, one being flushed to disk."""


def store_options(ttl_seconds: float | None = None) -> dict[str, Any]:
    """The ``options`` of a table: rocksdict with bounded memory (none for ``memory://``)."""
    if app.conf.store.scheme != "rocksdb":
        return {}
    settings = get_settings()
    options: dict[str, Any] = {
        "driver": "rocksdict",
        "write_buffer_size": settings.rocksdb_write_buffer_mb << 20,
        "max_write_buffer_number": MAX_WRITE_BUFFERS,
        "block_cache_size": settings.rocksdb_block_cache_mb << 20,
    }
    if ttl_seconds is not None:
        options["ttl"] = int(ttl_seconds)
    return options
