"""The payment gateway interface and a simulated gateway with injectable failures.

A gateway charges once per idempotency key (the reservation id): calling ``charge`` again with
the same key returns the first definitive result without charging again. That makes retries
after timeouts and redelivered records safe, which is what lets the payments agent be
at-least-once. A real gateway plugs in behind :class:`PaymentGateway`.

:class:`SimulatedGateway` draws latency and outcomes from a seeded RNG, and, when
``scripted``, lets the customer id force an outcome (deterministic failure injection):

============  ==============================================================
prefix        behaviour
============  ==============================================================
``decline``   every charge is declined
``transient`` every call fails with :class:`TransientPaymentError`
``flaky``     the first call per key fails transiently, later calls succeed;
              ``flakyN`` fails the first N calls
``hang``      the first call per key captures, then never answers (timeout)
``slow``      the call takes ``slow_ms`` before it succeeds
============  ==============================================================
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

from eventpro.domain.ids import uuid5_str
from eventpro.exceptions import EventProError
from eventpro.payments.config import LatencyDistribution, PaymentSettings

__all__ = (
    "ChargeResult",
    "ChargeStatus",
    "GatewayOptions",
    "PaymentError",
    "PaymentGateway",
    "PaymentTimeout",
    "RefundResult",
    "SimulatedGateway",
    "TransientPaymentError",
    "with_timeout",
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCRIPT_PREFIXES: tuple[str, ...] = ("decline", "transient", "flaky", "hang", "slow")

_PAYMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://eventpro.invalid/simulated-gateway")


class PaymentError(EventProError):
    """The gateway refused a call for good (bad request, unknown payment).

    Not retried: the record goes to the dead-letter topic. Check the gateway's account and
    the record, then replay it with ``eventpro dlq replay``.
    """


class TransientPaymentError(PaymentError):
    """The gateway could not answer now (network, 5xx, rate limit); nothing was decided.

    Retry with the same idempotency key: the gateway charges at most once per key.
    """


class PaymentTimeout(TransientPaymentError):
    """The gateway did not answer in time. The charge may or may not have happened.

    Retrying with the same idempotency key returns the outcome of the first call.
    """


class ChargeStatus(StrEnum):
    """Definitive outcome of a charge."""

    CAPTURED = "captured"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """What the gateway decided for one idempotency key (the same on every later call)."""

    idempotency_key: str
    status: ChargeStatus
    amount_cents: int
    payment_id: str | None = None
    code: str = ""
    detail: str = ""

    @property
    def captured(self) -> bool:
        """True when the money was taken."""
        return self.status is ChargeStatus.CAPTURED


@dataclass(frozen=True, slots=True)
class RefundResult:
    """A refund paid back (the same on every later call with the key)."""

    idempotency_key: str
    payment_id: str
    refund_id: str
    amount_cents: int


class PaymentGateway(Protocol):
    """What the payments agent needs from a payment provider."""

    async def charge(
        self, *, idempotency_key: str, amount_cents: int, customer_id: str, correlation_id: str = ""
    ) -> ChargeResult:
        """Charge once per ``idempotency_key``; a repeated key returns the first result.

        :raises TransientPaymentError: nothing was decided; retry with the same key.
        :raises PaymentError: the request can never succeed.
        """
        ...

    async def refund(
        self, *, idempotency_key: str, payment_id: str, amount_cents: int, correlation_id: str = ""
    ) -> RefundResult:
        """Pay ``amount_cents`` of ``payment_id`` back, once per ``idempotency_key``.

        :raises TransientPaymentError: retry with the same key.
        :raises PaymentError: the refund can never succeed.
        """
        ...


async def with_timeout(call: Awaitable[T], timeout_seconds: float, what: str) -> T:
    """Await ``call`` for at most ``timeout_seconds``.

    :raises PaymentTimeout: the gateway did not answer in time (the call is cancelled).
    """
    try:
        async with asyncio.timeout(timeout_seconds):  # no extra task per call, unlike wait_for
            return await call
    except TimeoutError:
        raise PaymentTimeout(
            f"{what}: no answer from the payment gateway within {timeout_seconds:g} s; "
            "retrying with the same idempotency key is safe"
        ) from None


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """How the simulated gateway behaves.

    :param latency_distribution: ``fixed`` (always ``latency_ms_min``), ``uniform``
        (between min and max) or ``exponential`` (min plus an exponential with mean max - min).
    :param decline_rate: share of charges declined.
    :param transient_error_rate: share of calls failing with :class:`TransientPaymentError`.
    :param timeout_rate: share of calls that capture but never answer.
    :param hang_seconds: how long a call that "never answers" sleeps.
    :param slow_ms: latency of a ``slow*`` customer.
    :param seed: RNG seed; ``None`` is random.
    :param scripted: honour the customer-id prefixes of the module docstring.
    :param idempotency_window_seconds: how long a key's result is kept (payment providers
        keep idempotency keys for a day, too): a call with the key after that charges anew.
    """

    latency_distribution: LatencyDistribution = "uniform"
    latency_ms_min: float = 5.0
    latency_ms_max: float = 50.0
    decline_rate: float = 0.0
    transient_error_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 3600.0
    slow_ms: float = 1000.0
    seed: int | None = None
    scripted: bool = True
    idempotency_window_seconds: float = 86_400.0

    @classmethod
    def from_settings(cls, settings: PaymentSettings) -> GatewayOptions:
        """Options from the ``EVENTPRO_GATEWAY_*`` settings."""
        return cls(
            latency_distribution=settings.gateway_latency_distribution,
            latency_ms_min=settings.gateway_latency_ms_min,
            latency_ms_max=settings.gateway_latency_ms_max,
            decline_rate=settings.gateway_decline_rate,
            transient_error_rate=settings.gateway_transient_error_rate,
            timeout_rate=settings.gateway_timeout_rate,
            seed=settings.gateway_seed,
            scripted=settings.gateway_scripted,
            idempotency_window_seconds=settings.gateway_idempotency_window_seconds,
        )


@dataclass
class _Ledger:
    charges: dict[str, ChargeResult] = field(default_factory=dict)
    refunds: dict[str, RefundResult] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )
    """A key's lock lives while a call holds or awaits it, not for the life of the ledger."""
    written: dict[tuple[str, str], float] = field(default_factory=dict)
    """(``"charge"`` or ``"refund"``, key) -> when it was last written, oldest first."""

    def touch(self, kind: str, key: str, now: float) -> None:
        """Note that ``key``'s entry was written at ``now`` (moves it to the newest end)."""
        self.written.pop((kind, key), None)
        self.written[(kind, key)] = now

    def forget_before(self, cutoff: float) -> None:
        """Drop the entries last written before ``cutoff`` (amortised O(1) per entry)."""
        while self.written:
            (kind, key), at = next(iter(self.written.items()))
            if at >= cutoff:
                return
            del self.written[(kind, key)]
            if kind == "refund":
                self.refunds.pop(key, None)
            else:
                self.charges.pop(key, None)
                self.attempts.pop(key, None)


def _flaky_failures(customer_id: str) -> int:
    digits = ""
    for char in customer_id[len("flaky") :]:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else 1


class SimulatedGateway:
    """An in-memory :class:`PaymentGateway` with latency, declines, errors and timeouts.

    Its idempotency ledger lives in this process: a record redelivered to another worker
    process would be charged there again. A real gateway keeps that ledger on its side. It
    keeps each key for ``idempotency_window_seconds``, so its memory stays bounded.

    :param clock: seconds on a monotonic clock (tests pass their own).
    """

    def __init__(
        self, options: GatewayOptions | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options or GatewayOptions()
        self._rng = random.Random(self.options.seed)
        self._ledger = _Ledger()
        self._clock = clock
        self.calls = 0

    @property
    def charges(self) -> dict[str, ChargeResult]:
        """Definitive charge results by idempotency key (a copy)."""
        return dict(self._ledger.charges)

    @property
    def refunds(self) -> dict[str, RefundResult]:
        """Refunds by idempotency key (a copy)."""
        return dict(self._ledger.refunds)

    @property
    def captured_cents(self) -> int:
        """Money taken and not refunded."""
        taken = sum(r.amount_cents for r in self._ledger.charges.values() if r.captured)
        return taken - sum(r.amount_cents for r in self._ledger.refunds.values())

    def _latency_seconds(self, customer_id: str) -> float:
        opts = self.options
        if self._script(customer_id) == "slow":
            return opts.slow_ms / 1000.0
        low, high = opts.latency_ms_min, max(opts.latency_ms_min, opts.latency_ms_max)
        if opts.latency_distribution == "fixed" or high == low:
            ms = low
        elif opts.latency_distribution == "exponential":
            ms = low + self._rng.expovariate(1.0 / (high - low))
        else:
            ms = self._rng.uniform(low, high)
        return ms / 1000.0

    def _script(self, customer_id: str) -> str | None:
        if not self.options.scripted:
            return None
        for prefix in _SCRIPT_PREFIXES:
            if customer_id.startswith(prefix):
                return prefix
        return None

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._ledger.locks.get(key)
        if lock is None:
            lock = self._ledger.locks[key] = asyncio.Lock()
        return lock

    def _attempt(self, key: str) -> int:
        attempt = self._ledger.attempts.get(key, 0) + 1
        self._ledger.attempts[key] = attempt
        self._ledger.touch("charge", key, self._clock())
        return attempt

    def _forget_old_keys(self) -> None:
        self._ledger.forget_before(self._clock() - self.options.idempotency_window_seconds)

    async def charge(
        self, *, idempotency_key: str, amount_cents: int, customer_id: str, correlation_id: str = ""
    ) -> ChargeResult:
        """Charge once per key (see :class:`PaymentGateway`)."""
        self.calls += 1
        self._forget_old_keys()
        async with self._lock(idempotency_key):
            known = self._ledger.charges.get(idempotency_key)
            if known is not None:
                return known
            attempt = self._attempt(idempotency_key)
            await asyncio.sleep(self._latency_seconds(customer_id))
            draw = self._rng.random()
            opts = self.options
            script = self._script(customer_id)
            if script == "transient" or (
                script == "flaky" and attempt <= _flaky_failures(customer_id)
            ):
                raise TransientPaymentError(
                    f"simulated gateway unavailable for {idempotency_key} (attempt {attempt})"
                )
            random_outcomes = script in (None, "slow")
            if random_outcomes and draw < opts.transient_error_rate:
                raise TransientPaymentError(
                    f"simulated gateway error for {idempotency_key} (attempt {attempt})"
                )
            if script == "decline" or (
                random_outcomes and draw < opts.transient_error_rate + opts.decline_rate
            ):
                result = ChargeResult(
                    idempotency_key,
                    ChargeStatus.DECLINED,
                    amount_cents,
                    code="card_declined",
                    detail="the simulated issuer declined the card",
                )
            else:
                payment_id = uuid5_str(_PAYMENT_NAMESPACE, f"charge/{idempotency_key}")
                result = ChargeResult(
                    idempotency_key, ChargeStatus.CAPTURED, amount_cents, payment_id=payment_id
                )
            self._ledger.charges[idempotency_key] = result
            self._ledger.touch("charge", idempotency_key, self._clock())
            self._ledger.attempts.pop(idempotency_key, None)  # settled: no attempt counts
            hangs = script == "hang" or (
                random_outcomes and result.captured and self._rng.random() < opts.timeout_rate
            )
            logger.debug(
                "simulated charge %s %s %d cents correlation_id=%s",
                idempotency_key,
                result.status.value,
                amount_cents,
                correlation_id,
            )
        if hangs:
            await asyncio.sleep(opts.hang_seconds)
        return result

    async def refund(
        self, *, idempotency_key: str, payment_id: str, amount_cents: int, correlation_id: str = ""
    ) -> RefundResult:
        """Refund once per key (see :class:`PaymentGateway`)."""
        self.calls += 1
        self._forget_old_keys()
        async with self._lock(f"refund/{idempotency_key}"):
            known = self._ledger.refunds.get(idempotency_key)
            if known is not None:
                return known
            await asyncio.sleep(self._latency_seconds(""))
            if self._rng.random() < self.options.transient_error_rate:
                raise TransientPaymentError(f"simulated refund error for {idempotency_key}")
            result = RefundResult(
                idempotency_key,
                payment_id,
                uuid5_str(_PAYMENT_NAMESPACE, f"refund/{idempotency_key}"),
                amount_cents,
            )
            self._ledger.refunds[idempotency_key] = result
            self._ledger.touch("refund", idempotency_key, self._clock())
            logger.debug(
                "simulated refund %s %d cents correlation_id=%s",
                idempotency_key,
                amount_cents,
                correlation_id,
            )
            return result
