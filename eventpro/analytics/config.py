"""Analytics settings from the environment (``EVENTPRO_ANALYTICS_*``), with defaults.

Kept apart from :class:`eventpro.settings.Settings` so the analytics can be tuned without
touching the core settings; both read the same ``EVENTPRO_`` environment.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ("AnalyticsSettings", "get_analytics_settings")

logger = logging.getLogger(__name__)


class AnalyticsSettings(BaseSettings):
    """``EVENTPRO_ANALYTICS_WINDOWS=10,60``, ``EVENTPRO_ANALYTICS_HISTORY=60``,
    ``EVENTPRO_ANALYTICS_BATCH_SIZE=2000``, ``EVENTPRO_ANALYTICS_BATCH_WITHIN_MS=1000``."""

    model_config = SettingsConfigDict(env_prefix="EVENTPRO_ANALYTICS_", frozen=True, extra="ignore")

    windows: Annotated[tuple[int, ...], NoDecode] = Field(
        (10, 60), description="Tumbling window sizes in whole seconds, e.g. 10,60."
    )
    history: int = Field(
        60, ge=1, le=10_000, description="Windows kept per size; older ones expire."
    )
    batch_size: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="Outcomes counted per batch, each totals and window key written once.",
    )
    batch_within_ms: float = Field(
        1000.0,
        ge=0.1,
        description="How long a batch waits to fill: how far the views may lag the outcomes.",
    )

    @field_validator("windows", mode="before")
    @classmethod
    def _parse_windows(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give at least one window size, e.g. EVENTPRO_ANALYTICS_WINDOWS=10,60")
        if any(size < 1 for size in value):
            raise ValueError("window sizes are whole seconds >= 1")
        return tuple(sorted(set(value)))

    def expires(self, size: int) -> int:
        """Seconds a window of ``size`` is kept after the newest record's window."""
        return size * self.history

    @property
    def horizon(self) -> int:
        """The longest expiry: how long a record may be late and still count anywhere."""
        return max(self.expires(size) for size in self.windows)


@lru_cache(maxsize=1)
def get_analytics_settings() -> AnalyticsSettings:
    """The process-wide analytics settings, read from the environment on first use."""
    return AnalyticsSettings()
