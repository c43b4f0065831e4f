"""``eventpro chaos``: an on-sale under SIGKILLs, rebalances, broker restarts and duplicates.

:func:`run_chaos` starts a broker and worker processes of its own, sends a seeded load in
chunks with a fault after each, waits for every request's terminal outcome and checks
DESIGN.md's invariants (:mod:`eventpro.invariants`) from the topics and the API.
"""

from __future__ import annotations

from eventpro.chaos.cluster import ChaosCluster, free_port
from eventpro.chaos.collector import SAGA_TOPICS, TopicCollector
from eventpro.chaos.harness import run_chaos, wait_until
from eventpro.chaos.report import ChaosReport, Injection
from eventpro.chaos.spec import (
    DEFAULT_FAULTS,
    ChaosError,
    ChaosPlan,
    ChaosSpec,
    Fault,
    PlannedEvent,
    PlannedRequest,
    build_plan,
)

__all__ = (
    "DEFAULT_FAULTS",
    "SAGA_TOPICS",
    "ChaosCluster",
    "ChaosError",
    "ChaosPlan",
    "ChaosReport",
    "ChaosSpec",
    "Fault",
    "Injection",
    "PlannedEvent",
    "PlannedRequest",
    "TopicCollector",
    "build_plan",
    "free_port",
    "run_chaos",
    "wait_until",
)
