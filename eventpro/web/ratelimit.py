"""Per-user token buckets, so one user (or bot) cannot flood ``ticket-requests`` in an on-sale.

Each worker keeps its own buckets in memory: a user spread over N workers by a load balancer
gets up to N times the configured rate. That is the point of the limit (stop floods cheaply,
before anything is produced); fairness per user is enforced exactly by the inventory agent's
``max_per_user``. Memory is bounded: the least recently seen users are forgotten first, and a
forgotten user starts again with a full bucket.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from eventpro.settings import Settings

__all__ = ("DEFAULT_MAX_USERS", "RateLimitExceeded", "TokenBucketLimiter", "limiter_from_settings")

logger = logging.getLogger(__name__)

DEFAULT_MAX_USERS = 100_000
"""Buckets kept per worker; about 100 bytes each."""


@dataclass(frozen=True, slots=True)
class RateLimitExceeded:
    """A refused request: when to retry, and the ``Retry-After`` header value."""

    key: str
    retry_after: float

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (HTTP's ``Retry-After`` has no fractions)."""
        return str(max(1, math.ceil(self.retry_after)))


class TokenBucketLimiter:
    """``rate`` requests per second per key, with bursts of up to ``burst``.

    :param clock: monotonic seconds; injectable so tests need no sleeps.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = DEFAULT_MAX_USERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> RateLimitExceeded | None:
        """Take one token for ``key``; ``None`` if allowed, else when to retry."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        refused = tokens < 1.0
        if not refused:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if refused:
            return RateLimitExceeded(key, (1.0 - tokens) / self.rate)
        return None


def limiter_from_settings(settings: Settings) -> TokenBucketLimiter | None:
    """The ticket-request limiter of ``settings``; ``None`` when limiting is off (rate 0)."""
    if settings.rate_limit_per_user <= 0:
        return None
    return TokenBucketLimiter(settings.rate_limit_per_user, settings.rate_limit_burst)
