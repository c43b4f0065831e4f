"""What an on-sale rush looks like: users, events, quantities, resubmissions and arrivals.

A :class:`LoadSpec` is a frozen value checked once (:meth:`LoadSpec.validate`), so the plan,
the senders and the report never meet an impossible option; every problem is reported at once
with the option that fixes it.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Literal, get_args

from eventpro.exceptions import EventProError

__all__ = (
    "ArrivalProfile",
    "LoadSpec",
    "LoadgenError",
    "QuantityMix",
    "Transport",
    "WaitFor",
    "arrival_offsets",
)

logger = logging.getLogger(__name__)

ArrivalProfile = Literal["all", "ramp", "rate"]
"""``all``: everyone at once; ``ramp``: rate rises linearly to ``rate`` over ``ramp_seconds``,
then stays; ``rate``: a constant ``rate`` requests/s."""

Transport = Literal["kafka", "http"]
WaitFor = Literal["decided", "final"]
"""``decided``: wait for SeatsReserved/RequestRejected; ``final``: also for every reserved
request's OrderConfirmed or SeatsReleased."""


class LoadgenError(EventProError):
    """Bad load-generator options, or the target could not be driven; the message says why."""


@dataclass(frozen=True, slots=True)
class QuantityMix:
    """How many tickets users ask for: ``((quantity, weight), ...)``."""

    weights: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> QuantityMix:
        """``"1:50,2:30,4:20"`` -> 50 % ask for 1, 30 % for 2, 20 % for 4.

        :raises LoadgenError: not ``quantity:weight`` pairs of positive integers.
        """
        pairs: list[tuple[int, int]] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            quantity, sep, weight = part.partition(":")
            try:
                pair = (int(quantity), int(weight) if sep else 1)
            except ValueError:
                raise LoadgenError(
                    f"quantity mix {text!r}: {part!r} is not QUANTITY:WEIGHT "
                    "(integers), e.g. --quantity-mix 1:50,2:30,4:20"
                ) from None
            if pair[0] < 1 or pair[1] < 1:
                raise LoadgenError(
                    f"quantity mix {text!r}: quantities and weights must be at least 1"
                )
            pairs.append(pair)
        if not pairs:
            raise LoadgenError("quantity mix is empty; e.g. --quantity-mix 1:50,2:30,4:20")
        return cls(tuple(pairs))

    @property
    def quantities(self) -> tuple[int, ...]:
        return tuple(q for q, _ in self.weights)

    @property
    def mean(self) -> float:
        total = sum(w for _, w in self.weights)
        return sum(q * w for q, w in self.weights) / total

    def __str__(self) -> str:
        return ",".join(f"{q}:{w}" for q, w in self.weights)


def _new_run_id() -> str:
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One load run.

    :param users: buyers; each sends one request (plus resubmissions). Default - ``50_000``.
    :param events: events on sale; users pick one at random. Default - ``10``.
    :param capacity: seats of each event. Default - ``2_000``.
    :param duplicate_rate: share of requests resubmitted with the same request_id, as an
        impatient buyer double-clicking. Default - ``0.05``.
    :param resubmit_delay: a resubmission follows its original within this many seconds.
    :param rate: requests/s of ``rate`` (and the peak of ``ramp``).
    :param run_id: names this run's events (``lg-<run_id>-e<i>``) and requests, so runs do not
        meet each other's sold-out events. Default - random.
    :param timeout: seconds to wait for outcomes after the last send.
    """

    users: int = 50_000
    events: int = 10
    capacity: int = 2_000
    price_cents: int = 5_000
    max_per_user: int = 8
    quantity_mix: QuantityMix = field(default_factory=lambda: QuantityMix.parse("1:50,2:30,4:20"))
    duplicate_rate: float = 0.05
    resubmit_delay: float = 1.0
    profile: ArrivalProfile = "all"
    rate: float = 5_000.0
    ramp_seconds: float = 10.0
    transport: Transport = "kafka"
    concurrency: int = 200
    wait_for: WaitFor = "decided"
    timeout: float = 120.0
    seed: int = 1
    run_id: str = field(default_factory=_new_run_id)

    def problems(self) -> list[str]:
        """Every invalid option, as a sentence naming the command-line option."""
        found: list[str] = []
        if self.users < 1:
            found.append(f"--users must be at least 1, got {self.users}")
        if self.events < 1:
            found.append(f"--events must be at least 1, got {self.events}")
        if self.capacity < 1:
            found.append(f"--capacity must be at least 1, got {self.capacity}")
        if self.price_cents < 0:
            found.append(f"--price-cents must not be negative, got {self.price_cents}")
        if self.max_per_user < 1:
            found.append(f"--max-per-user must be at least 1, got {self.max_per_user}")
        if not 0.0 <= self.duplicate_rate <= 1.0:
            found.append(f"--duplicate-rate must be within 0..1, got {self.duplicate_rate}")
        if self.resubmit_delay < 0:
            found.append(f"--resubmit-delay must not be negative, got {self.resubmit_delay}")
        if self.profile not in get_args(ArrivalProfile):
            found.append(f"--profile must be one of all, ramp, rate; got {self.profile!r}")
        if self.profile in ("rate", "ramp") and not (self.rate > 0 and math.isfinite(self.rate)):
            found.append(f"--rate must be a positive number for --profile {self.profile}")
        if self.profile == "ramp" and not self.ramp_seconds > 0:
            found.append(f"--ramp-seconds must be positive, got {self.ramp_seconds}")
        if self.transport not in get_args(Transport):
            found.append(f"--transport must be kafka or http; got {self.transport!r}")
        if self.concurrency < 1:
            found.append(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.wait_for not in get_args(WaitFor):
            found.append(f"--wait-for must be decided or final; got {self.wait_for!r}")
        if not self.timeout > 0:
            found.append(f"--timeout must be positive, got {self.timeout}")
        if not self.run_id or any(c in self.run_id for c in "/ \t\n"):
            found.append(f"--run-id must be non-empty without '/' or spaces: {self.run_id!r}")
        return found

    def validate(self) -> LoadSpec:
        """``self`` if every option is valid.

        :raises LoadgenError: listing every invalid option.
        """
        found = self.problems()
        if found:
            raise LoadgenError("invalid load options: " + "; ".join(found))
        return self

    def event_id(self, index: int) -> str:
        return f"lg-{self.run_id}-e{index}"

    def request_id(self, index: int) -> str:
        return f"lg-{self.run_id}-r{index}"

    def user_id(self, index: int) -> str:
        return f"lg-{self.run_id}-u{index}"


def arrival_offsets(spec: LoadSpec, count: int) -> list[float]:
    """Seconds after the start at which each of ``count`` first submissions arrives."""
    if spec.profile == "all":
        return [0.0] * count
    rate = spec.rate
    if spec.profile == "rate":
        return [i / rate for i in range(count)]
    ramp = spec.ramp_seconds
    ramp_arrivals = rate * ramp / 2.0
    offsets: list[float] = []
    for i in range(count):
        if i < ramp_arrivals:
            offsets.append(math.sqrt(2.0 * ramp * i / rate))
        else:
            offsets.append(ramp + (i - ramp_arrivals) / rate)
    return offsets
