"""The load run's report: one frozen value, rendered as text for people and JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventpro.loadgen.outcomes import LatencyStats, OutcomeSummary
from eventpro.loadgen.senders import SendStats
from eventpro.loadgen.spec import LoadSpec

__all__ = ("LoadReport",)

logger = logging.getLogger(__name__)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def _latency_dict(stats: LatencyStats) -> dict[str, Any]:
    return {
        k: (_finite(v) if isinstance(v, float) else v) for k, v in dataclasses.asdict(stats).items()
    }


@dataclass(frozen=True, slots=True)
class LoadReport:
    spec: LoadSpec
    target: str
    sending: SendStats
    outcomes: OutcomeSummary
    timed_out: bool
    wait_seconds: float

    @property
    def ok(self) -> bool:
        """Everything decided in time and the invariants held."""
        return not self.timed_out and self.outcomes.ok

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        out = self.outcomes
        return {
            "ok": self.ok,
            "target": self.target,
            "spec": {
                **{
                    f.name: getattr(spec, f.name)
                    for f in dataclasses.fields(spec)
                    if f.name != "quantity_mix"
                },
                "quantity_mix": str(spec.quantity_mix),
            },
            "sent": {
                "submissions": self.sending.sent,
                "distinct_requests": out.distinct_requests,
                "duplicates": self.sending.sent - out.distinct_requests,
                "accepted": self.sending.accepted,
                "failed": self.sending.failed,
                "errors": dict(self.sending.errors),
                "seconds": round(self.sending.seconds, 3),
                "rate_per_s": round(self.sending.rate, 1),
            },
            "outcomes": {
                "expected": out.expected,
                "decided": out.decided,
                "reserved": out.reserved,
                "finalized": out.finalized,
                "decisions": out.decisions,
                "finals": out.finals,
                "decision_seconds": _finite(out.decision_seconds()),
                "timed_out": self.timed_out,
                "wait_seconds": round(self.wait_seconds, 3),
            },
            "seats": {
                "capacity": sum(e.capacity for e in out.events),
                "held_or_sold": sum(e.held_or_sold for e in out.events),
                "confirmed": sum(e.confirmed_seats for e in out.events),
                "released": sum(e.released_seats for e in out.events),
                "sold_out_events": sum(1 for e in out.events if e.held_or_sold == e.capacity),
                "per_event": [dataclasses.asdict(e) for e in out.events],
            },
            "latency_ms": {
                "decision": _latency_dict(out.decision_latency),
                "final": _latency_dict(out.final_latency),
            },
            "invariants": {
                "no_oversell": out.no_oversell,
                "one_outcome_per_request": out.one_outcome_per_request,
                "every_request_decided": out.every_request_decided,
                "oversold_events": list(out.oversold_events),
                "violations": list(out.violations),
                "undecided_sample": list(out.undecided_sample),
            },
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def render_text(self) -> str:
        d = self.to_dict()
        sent, outcomes, seats = d["sent"], d["outcomes"], d["seats"]
        lines = [
            f"loadgen run {self.spec.run_id} via {self.target}: "
            f"{self.spec.users:,} users, {self.spec.events} events x {self.spec.capacity:,} "
            f"seats, mix {self.spec.quantity_mix}, profile {self.spec.profile}",
            f"sent       {sent['submissions']:,} submissions ({sent['distinct_requests']:,} "
            f"requests + {sent['duplicates']:,} resubmissions) in {sent['seconds']:.2f} s "
            f"({sent['rate_per_s']:,.0f}/s); accepted {sent['accepted']:,}, "
            f"failed {sent['failed']:,}" + (f" {sent['errors']}" if sent["errors"] else ""),
            f"decided    {outcomes['decided']:,} of {outcomes['expected']:,}"
            + (" (TIMED OUT)" if self.timed_out else "")
            + f" in {outcomes['wait_seconds']:.2f} s",
        ]
        for kind, count in {**outcomes["decisions"], **outcomes["finals"]}.items():
            lines.append(f"  {kind:<32} {count:>9,}")
        lines.append(
            f"seats      {seats['held_or_sold']:,} held or sold of {seats['capacity']:,} "
            f"({seats['confirmed']:,} confirmed, {seats['released']:,} released); "
            f"{seats['sold_out_events']} of {len(seats['per_event'])} events sold out"
        )
        for name, stats in d["latency_ms"].items():
            if stats["count"]:
                lines.append(
                    f"latency    {name:<8} p50 {stats['p50_ms']:.1f} ms  p95 "
                    f"{stats['p95_ms']:.1f} ms  p99 {stats['p99_ms']:.1f} ms  max "
                    f"{stats['max_ms']:.1f} ms  (n={stats['count']:,})"
                )
        inv = d["invariants"]
        lines.append(
            f"invariants no oversell: {'ok' if inv['no_oversell'] else 'VIOLATED'}; "
            "one outcome per request: "
            + ("ok" if inv["one_outcome_per_request"] else "VIOLATED")
            + "; every request decided: "
            + ("ok" if inv["every_request_decided"] else "NO")
        )
        lines.extend(f"  ! {v}" for v in inv["violations"])
        if inv["undecided_sample"]:
            lines.append("  undecided, e.g.: " + ", ".join(inv["undecided_sample"]))
        return "\n".join(lines)
