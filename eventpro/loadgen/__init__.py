"""``eventpro loadgen``: an on-sale rush against a running EventPro, with its report.

:func:`run_loadgen` creates the events, submits one request per simulated user (plus
resubmissions) through Kafka or the HTTP API on an arrival profile, reads the outcomes from
``reservations`` / ``orders`` until every request has one, and returns a :class:`LoadReport`
(sent, accepted, outcomes by kind, seats vs capacity, latency percentiles, invariants).
The benchmarks in ``bench/`` reuse the same pieces.
"""

from __future__ import annotations

from eventpro.loadgen.outcomes import (
    LatencyStats,
    OutcomeReader,
    OutcomeSummary,
    OutcomeTracker,
    percentile,
)
from eventpro.loadgen.plan import LoadPlan, PlannedEvent, PlannedRequest, PlannedSend, build_plan
from eventpro.loadgen.report import LoadReport
from eventpro.loadgen.runner import run_loadgen
from eventpro.loadgen.senders import (
    SendStats,
    create_events_http,
    create_events_kafka,
    kafka_partitions,
    send_http,
    send_kafka,
)
from eventpro.loadgen.spec import (
    ArrivalProfile,
    LoadgenError,
    LoadSpec,
    QuantityMix,
    Transport,
    WaitFor,
    arrival_offsets,
)

__all__ = (
    "ArrivalProfile",
    "LatencyStats",
    "LoadPlan",
    "LoadReport",
    "LoadSpec",
    "LoadgenError",
    "OutcomeReader",
    "OutcomeSummary",
    "OutcomeTracker",
    "PlannedEvent",
    "PlannedRequest",
    "PlannedSend",
    "QuantityMix",
    "SendStats",
    "Transport",
    "WaitFor",
    "arrival_offsets",
    "build_plan",
    "create_events_http",
    "create_events_kafka",
    "kafka_partitions",
    "percentile",
    "run_loadgen",
    "send_http",
    "send_kafka",
)
