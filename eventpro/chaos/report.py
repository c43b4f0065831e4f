"""The chaos run's report: load, outcomes, crashes injected, recovery times, invariants."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from eventpro.invariants import InvariantResult

__all__ = ("ChaosReport", "Injection")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Injection:
    """One fault and how the system came back.

    :param in_flight: requests sent so far without a terminal outcome when it struck.
    :param ready_s: from the restart (or start) to the process's readiness line.
    :param resumed_s: from readiness to every event deciding a fresh probe request.
    :param outage_s: from the fault to processing resumed.
    """

    kind: str
    target: str
    at_s: float
    in_flight: int
    ready_s: float | None
    resumed_s: float | None
    outage_s: float | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ChaosReport:
    run_id: str
    seed: int
    workers_start: int
    workers_end: int
    partitions: int
    events: int
    capacity_per_event: int
    requests: int
    probes: int
    resubmitted: int
    records_redelivered: int
    outcomes: dict[str, int]
    sold: dict[str, int]
    injections: tuple[Injection, ...]
    invariants: tuple[InvariantResult, ...]
    drained: bool
    drain_s: float
    duration_s: float
    worker_restarts_after_broker_loss: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.drained and all(result.ok for result in self.invariants)

    def as_dict(self) -> dict[str, Any]:
        data = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("injections", "invariants")
        }
        data["injections"] = [asdict(i) for i in self.injections]
        data["invariants"] = [r.as_dict() for r in self.invariants]
        data["ok"] = self.ok
        return data

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2))

    def render_text(self) -> str:
        def secs(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}s"

        lines = [
            f"chaos run {self.run_id} (seed {self.seed}): {'PASS' if self.ok else 'FAIL'}",
            f"  workers         {self.workers_start} at start, {self.workers_end} at the end; "
            f"{self.partitions} partitions",
            f"  events          {self.events} x {self.capacity_per_event} seats",
            f"  requests        {self.requests} distinct (+{self.probes} probes), "
            f"{self.resubmitted} resubmitted, {self.records_redelivered} saga records "
            "delivered twice",
            "  outcomes        "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(self.outcomes.items())),
            f"  seats sold      {sum(self.sold.values())} of "
            f"{self.events * self.capacity_per_event}",
            f"  drained         {'yes' if self.drained else 'NO'} after {self.drain_s:.1f}s; "
            f"run took {self.duration_s:.1f}s",
            "  faults injected:",
        ]
        for inj in self.injections:
            lines.append(
                f"    {inj.at_s:7.1f}s  {inj.kind:<12} {inj.target:<10}"
                f" in flight {inj.in_flight:>5}"
                f"  ready {secs(inj.ready_s):>7}  resumed {secs(inj.resumed_s):>7}"
                f"  outage {secs(inj.outage_s):>7}  {inj.detail}"
            )
        if self.worker_restarts_after_broker_loss:
            lines.append(
                f"  workers that exited after losing the broker and were restarted: "
                f"{self.worker_restarts_after_broker_loss}"
            )
        lines.append("  invariants:")
        for result in self.invariants:
            mark = "ok  " if result.ok else "FAIL"
            lines.append(f"    {mark} {result.number}. {result.name} ({result.checked})")
            lines.extend(f"           - {v}" for v in result.violations)
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
