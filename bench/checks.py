"""The invariants every benchmark phase reports, from the load generator's outcome summary."""

from __future__ import annotations

from typing import Any

from eventpro.loadgen.outcomes import OutcomeSummary

__all__ = ("invariants",)


def invariants(summary: OutcomeSummary) -> dict[str, Any]:
    """No oversell and one outcome per request (``ok``), with the counts behind them.

    ``every_request_decided`` is reported but not part of ``ok``: a phase that timed out says
    so itself, and its decided requests still must not break the invariants.
    """
    return {
        "ok": summary.no_oversell and summary.one_outcome_per_request,
        "no_oversell": summary.no_oversell,
        "one_outcome_per_request": summary.one_outcome_per_request,
        "every_request_decided": summary.every_request_decided,
        "decided": summary.decided,
        "expected": summary.expected,
        "violations": list(summary.violations),
    }
