"""SimulatedGateway: idempotency, seeded rates, scripted failures, timeouts, refunds."""

from __future__ import annotations

import asyncio

import pytest

from eventpro.payments import (
    ChargeStatus,
    GatewayOptions,
    PaymentTimeout,
    SimulatedGateway,
    TransientPaymentError,
)
from eventpro.payments.gateway import with_timeout

FAST = {"latency_distribution": "fixed", "latency_ms_min": 0.0}


async def test_charging_twice_with_one_key_charges_once() -> None:
    gateway = SimulatedGateway(GatewayOptions(**FAST, seed=1))
    first = await gateway.charge(idempotency_key="res-1", amount_cents=500, customer_id="u1")
    again = await gateway.charge(idempotency_key="res-1", amount_cents=999, customer_id="u1")
    assert first.status is ChargeStatus.CAPTURED and first.payment_id
    assert again == first
    assert list(gateway.charges) == ["res-1"]
    assert gateway.captured_cents == 500


async def test_concurrent_charges_with_one_key_charge_once() -> None:
    gateway = SimulatedGateway(GatewayOptions(latency_distribution="fixed", latency_ms_min=20))
    results = await asyncio.gather(
        *(
            gateway.charge(idempotency_key="res-c", amount_cents=100, customer_id="u")
            for _ in range(10)
        )
    )
    assert len({r.payment_id for r in results}) == 1
    assert gateway.captured_cents == 100


async def test_settled_keys_keep_their_result_but_no_lock_or_attempt_count() -> None:
    """A worker charges every reservation: per-key bookkeeping beyond the result would grow
    without bound."""
    gateway = SimulatedGateway(GatewayOptions(**FAST))
    await asyncio.gather(
        *(
            gateway.charge(idempotency_key=f"res-{i}", amount_cents=1, customer_id="u")
            for i in range(50)
        )
    )
    with pytest.raises(TransientPaymentError):
        await gateway.charge(idempotency_key="res-t", amount_cents=1, customer_id="transient")
    await gateway.refund(idempotency_key="res-1", payment_id="p", amount_cents=1)
    assert len(gateway.charges) == 50 and len(gateway.refunds) == 1
    ledger = gateway._ledger  # the simulator's own bookkeeping
    assert len(ledger.locks) == 0
    assert dict(ledger.attempts) == {"res-t": 1}  # unsettled: its attempts still count


async def _outcomes(seed: int, n: int = 400) -> list[str]:
    gateway = SimulatedGateway(
        GatewayOptions(**FAST, decline_rate=0.25, transient_error_rate=0.1, seed=seed)
    )
    out = []
    for i in range(n):
        try:
            result = await gateway.charge(idempotency_key=f"k{i}", amount_cents=1, customer_id="u")
            out.append(result.status.value)
        except TransientPaymentError:
            out.append("transient")
    return out


async def test_seeded_rates_are_reproducible_and_close_to_configured() -> None:
    first, second = await _outcomes(7), await _outcomes(7)
    assert first == second
    assert first != await _outcomes(8)
    assert 0.18 < first.count("declined") / len(first) < 0.32
    assert 0.05 < first.count("transient") / len(first) < 0.15


async def test_transient_failure_records_nothing_and_retry_can_succeed() -> None:
    gateway = SimulatedGateway(GatewayOptions(**FAST))
    with pytest.raises(TransientPaymentError, match="attempt 1"):
        await gateway.charge(idempotency_key="r", amount_cents=10, customer_id="flaky-1")
    assert gateway.charges == {}
    result = await gateway.charge(idempotency_key="r", amount_cents=10, customer_id="flaky-1")
    assert result.captured


async def test_flaky_n_fails_the_first_n_calls() -> None:
    gateway = SimulatedGateway(GatewayOptions(**FAST))
    for _ in range(2):
        with pytest.raises(TransientPaymentError):
            await gateway.charge(idempotency_key="f", amount_cents=1, customer_id="flaky2-u")
    result = await gateway.charge(idempotency_key="f", amount_cents=1, customer_id="flaky2-u")
    assert result.captured


async def test_scripted_decline_and_permanent_outage() -> None:
    gateway = SimulatedGateway(GatewayOptions(**FAST))
    declined = await gateway.charge(idempotency_key="d", amount_cents=10, customer_id="decline-x")
    assert declined.status is ChargeStatus.DECLINED and declined.payment_id is None
    for _ in range(3):
        with pytest.raises(TransientPaymentError):
            await gateway.charge(idempotency_key="t", amount_cents=10, customer_id="transient-x")


async def test_scripts_off_means_prefixes_are_ordinary_customers() -> None:
    gateway = SimulatedGateway(GatewayOptions(**FAST, scripted=False))
    result = await gateway.charge(idempotency_key="d", amount_cents=10, customer_id="decline-x")
    assert result.captured


async def test_hanging_call_times_out_but_retry_returns_the_capture() -> None:
    gateway = SimulatedGateway(GatewayOptions(**FAST, hang_seconds=60))
    call = gateway.charge(idempotency_key="h", amount_cents=70, customer_id="hang-1")
    with pytest.raises(PaymentTimeout, match="retrying with the same idempotency key is safe"):
        await with_timeout(call, 0.05, "charge of h")
    retry = await with_timeout(
        gateway.charge(idempotency_key="h", amount_cents=70, customer_id="hang-1"), 1.0, "h"
    )
    assert retry.captured
    assert gateway.captured_cents == 70


async def test_refund_is_idempotent() -> None:
    gateway = SimulatedGateway(GatewayOptions(**FAST))
    charge = await gateway.charge(idempotency_key="r", amount_cents=300, customer_id="u")
    assert charge.payment_id is not None
    first = await gateway.refund(
        idempotency_key="r", payment_id=charge.payment_id, amount_cents=300
    )
    again = await gateway.refund(
        idempotency_key="r", payment_id=charge.payment_id, amount_cents=300
    )
    assert first == again
    assert gateway.captured_cents == 0


@pytest.mark.parametrize("distribution", ["fixed", "uniform", "exponential"])
async def test_latency_distributions_stay_at_or_above_the_minimum(distribution: str) -> None:
    gateway = SimulatedGateway(
        GatewayOptions(
            latency_distribution=distribution, latency_ms_min=2, latency_ms_max=6, seed=3
        )  # type: ignore[arg-type]
    )
    samples = [gateway._latency_seconds("u") for _ in range(200)]
    assert min(samples) >= 0.002
    if distribution == "uniform":
        assert max(samples) <= 0.006
    if distribution == "fixed":
        assert set(samples) == {0.002}
    assert gateway._latency_seconds("slow-1") == 1.0


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_keys_are_forgotten_after_the_idempotency_window() -> None:
    """The ledger is bounded by the window: a long run's memory does not grow with its
    charges, and a key used within the window still charges once."""
    clock = _Clock()
    gateway = SimulatedGateway(GatewayOptions(**FAST, idempotency_window_seconds=60), clock=clock)
    first = await gateway.charge(idempotency_key="old", amount_cents=100, customer_id="u")
    with pytest.raises(TransientPaymentError):
        await gateway.charge(idempotency_key="stuck", amount_cents=1, customer_id="transient")
    await gateway.refund(idempotency_key="old", payment_id="p", amount_cents=100)
    clock.now += 40
    again = await gateway.charge(idempotency_key="old", amount_cents=100, customer_id="u")
    assert again == first  # within the window: the first result
    await gateway.charge(idempotency_key="newer", amount_cents=7, customer_id="u")
    clock.now += 30  # "old", "stuck" and the refund are 70 s old, "newer" 30 s
    await gateway.charge(idempotency_key="newest", amount_cents=9, customer_id="u")
    assert list(gateway.charges) == ["newer", "newest"]
    assert gateway.refunds == {}
    assert gateway._ledger.attempts == {}  # the unsettled key's count went with it
    assert len(gateway._ledger.written) == 2
    assert gateway.captured_cents == 16
    # After the window, the key is a new charge (a provider that forgot it charges again).
    await gateway.charge(idempotency_key="old", amount_cents=100, customer_id="u")
    assert list(gateway.charges) == ["newer", "newest", "old"]


async def test_a_long_run_keeps_only_the_windows_keys() -> None:
    clock = _Clock()
    gateway = SimulatedGateway(GatewayOptions(**FAST, idempotency_window_seconds=10), clock=clock)
    for i in range(1_000):
        clock.now += 1
        await gateway.charge(idempotency_key=f"res-{i}", amount_cents=1, customer_id="u")
    kept = [f"res-{i}" for i in range(989, 1_000)]  # written at most 10 s ago
    assert list(gateway.charges) == kept
    assert len(gateway._ledger.written) == len(kept)
