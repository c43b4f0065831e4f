"""Operations: the Prometheus sensor, ``GET /metrics``, consumer lag and DLQ depth.

Importing this package installs the sensor on :data:`eventpro.app.app`.
"""

from __future__ import annotations

from eventpro.monitoring.lag import PartitionLag, consumer_lag, partition_lag
from eventpro.monitoring.sensor import EventProSensor, quantile
from eventpro.monitoring.service import (
    broker_problem,
    install_sensor,
    local_summary,
    refresh_dlq_depth,
    sensor,
)

__all__ = (
    "EventProSensor",
    "PartitionLag",
    "broker_problem",
    "consumer_lag",
    "install_sensor",
    "local_summary",
    "partition_lag",
    "quantile",
    "refresh_dlq_depth",
    "sensor",
)
