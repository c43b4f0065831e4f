"""Consumer lag per partition: how many records the worker has not committed yet.

``lag = highwater - committed`` where ``highwater`` is the partition's end offset as the
consumer last saw it and ``committed`` the next offset this group will read. The committed
offset comes from the app's monitor (this process's commits) or, before the first commit,
from what the consumer read from the broker at assignment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import faust
from faust.types import TP

__all__ = ("PartitionLag", "consumer_lag", "partition_lag")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, order=True)
class PartitionLag:
    """Lag of one source partition."""

    topic: str
    partition: int
    lag: int


def partition_lag(highwater: int | None, committed: int | None) -> int | None:
    """Records not yet committed; ``None`` when the end offset is unknown."""
    if highwater is None:
        return None
    if committed is None or committed < 0:
        return max(highwater, 0)
    return max(highwater - committed, 0)


def _committed(app: faust.App, tp: TP) -> int | None:
    offsets: Mapping[TP, int] = app.monitor.tp_committed_offsets or {}
    if tp in offsets:
        return int(offsets[tp])
    from_broker: Mapping[TP, int | None] = getattr(app.consumer, "_committed_offset", {})
    value = from_broker.get(tp)
    return None if value is None else int(value)


def consumer_lag(app: faust.App) -> list[PartitionLag]:
    """Lag of every source partition this worker is assigned (changelogs excluded)."""
    if not app.started:
        return []
    try:
        consumer = app.consumer
        assignment = consumer.assignment()
    except Exception as exc:  # consumer not created or closed
        logger.debug("no consumer lag yet: %r", exc)
        return []
    changelogs = set(app.tables.changelog_topics)
    out: list[PartitionLag] = []
    for tp in assignment:
        if tp.topic in changelogs:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # partition just revoked
            continue
        lag = partition_lag(highwater, _committed(app, tp))
        if lag is not None:
            out.append(PartitionLag(tp.topic, tp.partition, lag))
    return sorted(out)
