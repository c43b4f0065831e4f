"""Store options: every table's RocksDB store has bounded memtables and read cache."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.stores.rocksdb import RocksDBOptions

from eventpro.app import app
from eventpro.settings import get_settings
from eventpro.tables import stores


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
    # The read cache is not in RocksDB's OPTIONS file; Faust passes this size to its Cache.
    assert options["block_cache_size"] == settings.rocksdb_block_cache_mb << 20
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
