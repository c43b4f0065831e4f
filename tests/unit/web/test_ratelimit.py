"""Per-user token buckets (with a fake clock: no sleeps)."""

from __future__ import annotations

import pytest

from eventpro.settings import Settings
from eventpro.web.ratelimit import TokenBucketLimiter, limiter_from_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refused_with_retry_after() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("alice") for _ in range(3)] == [None, None, None]
    refused = limiter.acquire("alice")
    assert refused is not None and refused.key == "alice"
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.retry_after_header == "1"


def test_users_have_separate_buckets() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=1, clock=FakeClock())
    assert limiter.acquire("alice") is None
    assert limiter.acquire("alice") is not None
    assert limiter.acquire("bob") is None


def test_tokens_refill_with_time_up_to_burst() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1.0, burst=2, clock=clock)
    assert limiter.acquire("u") is None and limiter.acquire("u") is None
    assert limiter.acquire("u") is not None
    clock.now += 1.0
    assert limiter.acquire("u") is None
    assert limiter.acquire("u") is not None
    clock.now += 3600.0
    assert [limiter.acquire("u") is None for _ in range(3)] == [True, True, False]


def test_refused_requests_do_not_consume_tokens() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.acquire("u") is None
    for _ in range(10):
        assert limiter.acquire("u") is not None
    clock.now += 1.0
    assert limiter.acquire("u") is None


def test_long_wait_rounds_retry_after_up() -> None:
    limiter = TokenBucketLimiter(rate=0.1, burst=1, clock=FakeClock())
    limiter.acquire("u")
    refused = limiter.acquire("u")
    assert refused is not None and refused.retry_after_header == "10"


def test_memory_is_bounded_by_forgetting_least_recent_users() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1.0, burst=1, max_keys=2, clock=clock)
    limiter.acquire("a")
    limiter.acquire("b")
    limiter.acquire("a")  # refused, but makes "a" the most recent
    limiter.acquire("c")
    assert len(limiter) == 2
    assert limiter.acquire("a") is not None  # still remembered: still empty
    assert limiter.acquire("b") is None  # forgotten: full bucket again


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_invalid_parameters(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        TokenBucketLimiter(rate=rate, burst=burst)


def test_limiter_from_settings() -> None:
    assert limiter_from_settings(Settings()) is None
    limiter = limiter_from_settings(Settings(rate_limit_per_user=5, rate_limit_burst=7))
    assert limiter is not None and (limiter.rate, limiter.burst) == (5.0, 7)
