"""Settings of the payment saga, notifications and retries (``EVENTPRO_*`` environment).

Kept apart from :mod:`eventpro.settings` so the saga can be configured without touching the
core settings; the fields use the same prefix, so merging them later changes no variable.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventpro.topics import RETRY_DELAYS_MS, RETRY_TOPICS

__all__ = ("LatencyDistribution", "PaymentSettings", "get_payment_settings")

logger = logging.getLogger(__name__)

LatencyDistribution = Literal["fixed", "uniform", "exponential"]


class PaymentSettings(BaseSettings):
    """Payment gateway, retry and notification settings; ``EVENTPRO_<FIELD>`` each."""

    model_config = SettingsConfigDict(env_prefix="EVENTPRO_", frozen=True, extra="ignore")

    gateway_latency_distribution: LatencyDistribution = Field(
        "uniform", description="Simulated gateway latency: fixed (min), uniform, exponential."
    )
    gateway_latency_ms_min: float = Field(5.0, ge=0, description="Lowest simulated latency.")
    gateway_latency_ms_max: float = Field(
        50.0, ge=0, description="Highest (uniform) or mean (exponential) simulated latency."
    )
    gateway_decline_rate: float = Field(0.0, ge=0, le=1, description="Share of charges declined.")
    gateway_transient_error_rate: float = Field(
        0.0, ge=0, le=1, description="Share of gateway calls failing with a retryable error."
    )
    gateway_timeout_rate: float = Field(
        0.0, ge=0, le=1, description="Share of gateway calls that never answer (time out)."
    )
    gateway_seed: int | None = Field(None, description="Seed of the simulator's random draws.")
    gateway_scripted: bool = Field(
        True,
        description="Let user_id prefixes force outcomes (decline*, transient*, flaky*, hang*, "
        "slow*): deterministic failure injection for tests and demos.",
    )
    gateway_idempotency_window_seconds: float = Field(
        86_400.0,
        gt=0,
        description="How long the simulated gateway remembers an idempotency key (bounds "
        "its memory); a charge repeated later is a new charge.",
    )
    payment_timeout_seconds: float = Field(
        5.0, gt=0, description="A gateway call taking longer is a transient failure (retried)."
    )
    payments_max_in_flight: int = Field(
        64, ge=1, description="Gateway calls one payments agent runs at once."
    )
    notifications_max_in_flight: int = Field(
        256,
        ge=1,
        description="Notifications one notifications agent sends at once (records per batch).",
    )
    notifications_batch_within_ms: float = Field(
        20.0,
        gt=0,
        description="How long a notifications batch waits to fill: the latency it adds.",
    )
    notifications_batch_behind_ms: float = Field(
        250.0,
        gt=0,
        description="How long a notifications batch waits to fill when a full batch already "
        "waits in the partitions (a backlog): fewer, larger batches.",
    )
    retry_delays_ms: tuple[int, ...] = Field(
        RETRY_DELAYS_MS, description="Backoff before each retry topic's attempt (JSON list)."
    )
    notification_channel: Literal["email", "sms"] = "email"
    notifications_log: Path | None = Field(
        None, description="JSON-lines file the simulated notification sink appends to."
    )

    @field_validator("retry_delays_ms")
    @classmethod
    def _one_delay_per_retry_topic(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) != len(RETRY_TOPICS) or any(delay < 0 for delay in value):
            raise ValueError(
                f"EVENTPRO_RETRY_DELAYS_MS needs {len(RETRY_TOPICS)} non-negative delays in "
                f"milliseconds, one per retry topic {list(RETRY_TOPICS)}, e.g. [1000,5000,30000]"
            )
        return value


@lru_cache(maxsize=1)
def get_payment_settings() -> PaymentSettings:
    """The process-wide payment settings, read from the environment on first use."""
    return PaymentSettings()
