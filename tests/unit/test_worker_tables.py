"""Exactly-once workers rebuild their tables from the committed changelog at start."""

from __future__ import annotations

from pathlib import Path

from eventpro.settings import Settings
from eventpro.worker import discard_untrusted_tables


def _tables(tmp_path: Path) -> Path:
    tabledir = tmp_path / "eventpro-data" / "v1" / "tables"
    (tabledir / "inventory-0.db").mkdir(parents=True)
    (tabledir / "inventory-0.db" / "CURRENT").write_text("MANIFEST-1\n")
    return tabledir


def test_exactly_once_discards_the_local_stores(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    settings = Settings(data_dir=str(tmp_path), processing_guarantee="exactly_once")
    assert discard_untrusted_tables(settings, tabledir) is True
    assert not tabledir.exists()
    assert discard_untrusted_tables(settings, tabledir) is False  # nothing left to remove


def test_at_least_once_keeps_them_for_a_fast_restart(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    settings = Settings(data_dir=str(tmp_path))
    assert discard_untrusted_tables(settings, tabledir) is False
    assert (tabledir / "inventory-0.db" / "CURRENT").exists()
