"""The worker hands its settings to the rest of the process through the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from eventpro.settings import Settings, get_settings
from eventpro.worker import install_settings


@pytest.fixture()
def eventpro_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ``EVENTPRO_*`` variable of a setting back as it was after the test."""
    for name in Settings.model_fields:
        key = f"EVENTPRO_{name.upper()}"
        monkeypatch.setenv(key, os.environ.get(key, ""))  # remembered, then restored
        if not os.environ[key]:
            monkeypatch.delenv(key)
    yield
    get_settings.cache_clear()


def test_installed_settings_read_back_equal_with_unset_ones_left_unset(
    eventpro_environment: None,
) -> None:
    settings = Settings(rocksdb_memory_mb=96)
    assert settings.rocksdb_block_cache_mb is None
    install_settings(settings)
    assert "EVENTPRO_ROCKSDB_BLOCK_CACHE_MB" not in os.environ  # not the text "None"
    assert os.environ["EVENTPRO_ROCKSDB_MEMORY_MB"] == "96"
    assert get_settings() == settings


def test_a_retired_setting_still_set_is_passed_on_for_its_warning(
    eventpro_environment: None,
) -> None:
    settings = Settings(rocksdb_block_cache_mb=8)
    install_settings(settings)
    assert os.environ["EVENTPRO_ROCKSDB_BLOCK_CACHE_MB"] == "8"
    assert get_settings() == settings
