"""What the analytics count: sale facts read from outcome events, and the counters per window.

Definitions (the dashboard and ``/sales`` use them):

- ``requests``: requests *decided* (``SeatsReserved`` + ``RequestRejected``), at decision time.
- ``reserved``: seats put on hold (``SeatsReserved.quantity``).
- ``sold`` / ``revenue_cents``: seats and money of confirmed orders (``OrderConfirmed``), the
  only point where a seat is sold; a hold that expires or is declined never counts as sold.
- ``rejected`` (+ ``rejected_by_reason``): rejected requests; ``released``: seats given back.

A fact's time is its envelope's ``occurred_at`` (when the decision was made), so replaying the
topics rebuilds the same windows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from eventpro.schemas import Envelope, OrderConfirmed, RequestRejected, SeatsReleased, SeatsReserved

__all__ = ("EventSales", "FactKind", "SaleFact", "WindowCounts", "fact_from")

logger = logging.getLogger(__name__)


class FactKind(StrEnum):
    """The outcome a fact records."""

    RESERVED = "reserved"
    REJECTED = "rejected"
    SOLD = "sold"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class SaleFact:
    """One outcome, reduced to what the analytics count.

    :param fact_id: the envelope's ``event_id`` (deterministic per outcome: the dedup key).
    :param occurred_at: event time in epoch seconds.
    """

    fact_id: str
    event_id: str
    kind: FactKind
    quantity: int
    occurred_at: float
    amount_cents: int = 0
    reason: str | None = None


def fact_from(envelope: Envelope) -> SaleFact | None:
    """The fact behind an outcome event; ``None`` for events the analytics ignore."""
    data = envelope.data
    ts = envelope.occurred_at.timestamp()
    match data:
        case SeatsReserved():
            kind, amount, reason = FactKind.RESERVED, data.amount_cents, None
        case RequestRejected():
            kind, amount, reason = FactKind.REJECTED, 0, data.reason.value
        case OrderConfirmed():
            kind, amount, reason = FactKind.SOLD, data.amount_cents, None
        case SeatsReleased():
            kind, amount, reason = FactKind.RELEASED, 0, data.reason.value
        case _:
            return None
    return SaleFact(
        fact_id=envelope.event_id,
        event_id=data.event_id,
        kind=kind,
        quantity=max(int(data.quantity), 0),
        occurred_at=ts,
        amount_cents=amount,
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Counters of one event over one window (or over all time, for totals)."""

    requests: int = 0
    reserved: int = 0
    sold: int = 0
    rejected: int = 0
    released: int = 0
    revenue_cents: int = 0
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)

    def add(self, fact: SaleFact) -> WindowCounts:
        """These counts with ``fact`` counted."""
        match fact.kind:
            case FactKind.RESERVED:
                return replace(
                    self, requests=self.requests + 1, reserved=self.reserved + fact.quantity
                )
            case FactKind.REJECTED:
                reasons = dict(self.rejected_by_reason)
                key = fact.reason or "unknown"
                reasons[key] = reasons.get(key, 0) + 1
                return replace(
                    self,
                    requests=self.requests + 1,
                    rejected=self.rejected + 1,
                    rejected_by_reason=reasons,
                )
            case FactKind.SOLD:
                return replace(
                    self,
                    sold=self.sold + fact.quantity,
                    revenue_cents=self.revenue_cents + fact.amount_cents,
                )
            case FactKind.RELEASED:
                return replace(self, released=self.released + fact.quantity)
        return self

    def merge(self, other: WindowCounts) -> WindowCounts:
        """The sum of two counts (totals gathered from several workers)."""
        reasons = dict(self.rejected_by_reason)
        for key, count in other.rejected_by_reason.items():
            reasons[key] = reasons.get(key, 0) + count
        return WindowCounts(
            requests=self.requests + other.requests,
            reserved=self.reserved + other.reserved,
            sold=self.sold + other.sold,
            rejected=self.rejected + other.rejected,
            released=self.released + other.released,
            revenue_cents=self.revenue_cents + other.revenue_cents,
            rejected_by_reason=reasons,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "requests": self.requests,
            "reserved": self.reserved,
            "sold": self.sold,
            "rejected": self.rejected,
            "released": self.released,
            "revenue_cents": self.revenue_cents,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WindowCounts:
        """From :meth:`to_dict` (missing counters are zero)."""
        return cls(
            requests=int(raw.get("requests", 0)),
            reserved=int(raw.get("reserved", 0)),
            sold=int(raw.get("sold", 0)),
            rejected=int(raw.get("rejected", 0)),
            released=int(raw.get("released", 0)),
            revenue_cents=int(raw.get("revenue_cents", 0)),
            rejected_by_reason={
                str(k): int(v) for k, v in dict(raw.get("rejected_by_reason") or {}).items()
            },
        )


@dataclass(frozen=True, slots=True)
class EventSales:
    """All-time counts of one event and its watermark (newest event time seen, seconds)."""

    totals: WindowCounts = field(default_factory=WindowCounts)
    watermark: float | None = None

    def add(self, fact: SaleFact) -> EventSales:
        """With ``fact`` counted and the watermark moved forward."""
        mark = fact.occurred_at if self.watermark is None else max(self.watermark, fact.occurred_at)
        return EventSales(self.totals.add(fact), mark)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"totals": self.totals.to_dict(), "watermark": self.watermark}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EventSales:
        """From :meth:`to_dict`."""
        mark = raw.get("watermark")
        return cls(
            WindowCounts.from_dict(raw.get("totals") or {}), None if mark is None else float(mark)
        )
