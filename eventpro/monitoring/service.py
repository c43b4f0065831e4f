"""The worker's sensor, ``GET /metrics`` and the DLQ-depth refresher, on :data:`eventpro.app.app`.

Importing this module adds :data:`sensor` to ``app.sensors`` (once per app) and registers the
view and timer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faust import web
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eventpro.app import app
from eventpro.monitoring.lag import consumer_lag
from eventpro.monitoring.sensor import EventProSensor
from eventpro.settings import get_settings
from eventpro.topics import DLQ, RETRY_TOPICS, TICKET_REQUESTS

__all__ = (
    "DLQ_REFRESH_SECONDS",
    "broker_problem",
    "install_sensor",
    "local_summary",
    "refresh_dlq_depth",
    "sensor",
)

logger = logging.getLogger(__name__)

DLQ_REFRESH_SECONDS = 3.0
INVENTORY_AGENT = "eventpro.agents.inventory"

_settings = get_settings()


def install_sensor(faust_app: faust.App) -> EventProSensor:
    """The app's EventPro sensor, created and added to ``app.sensors`` on first call."""
    for existing in faust_app.sensors:
        if isinstance(existing, EventProSensor):
            return existing
    created = EventProSensor(
        faust_app,
        decision_topic=_settings.topic_name(TICKET_REQUESTS),
        decision_agent=INVENTORY_AGENT,
        retry_topics=[_settings.topic_name(name) for name in RETRY_TOPICS],
        dlq_topic=_settings.topic_name(DLQ),
    )
    faust_app.sensors.add(created)
    return created


sensor = install_sensor(app)


async def refresh_dlq_depth(faust_app: faust.App, target: EventProSensor) -> int | None:
    """Ask the broker how many records the DLQ holds; sets ``eventpro_dlq_depth``."""
    tp = TP(_settings.topic_name(DLQ), 0)
    consumer = faust_app.consumer
    ends = await consumer.highwaters(tp)
    starts = await consumer.earliest_offsets(tp)
    end, start = ends.get(tp), starts.get(tp)
    if end is None:
        return None
    depth = max(int(end) - int(start or 0), 0)
    target.dlq_depth.set(depth)
    target.last_dlq_depth = depth
    return depth


_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, TimeoutError, OSError)


@app.timer(DLQ_REFRESH_SECONDS, name="eventpro.monitoring.dlq-depth")
async def _dlq_depth_timer() -> None:
    """Refresh the DLQ depth; the same round trip tells ``/ready`` whether the broker answers."""
    try:
        async with asyncio.timeout(DLQ_REFRESH_SECONDS):
            await refresh_dlq_depth(app, sensor)
    except _UNREACHABLE as exc:
        if sensor.broker_error is None:
            logger.warning("broker did not answer the DLQ offsets request: %r", exc)
        sensor.broker_error = repr(exc) or type(exc).__name__
    except Exception as exc:  # topic not created yet, consumer restarting: next tick
        logger.debug("DLQ depth not refreshed: %r", exc)
    else:
        sensor.broker_error = None


def broker_problem(faust_app: faust.App) -> str | None:
    """Why the broker looked unreachable at the last probe, or ``None`` (answered/not probed)."""
    return install_sensor(faust_app).broker_error


def local_summary(faust_app: faust.App) -> dict[str, Any]:
    """This worker's operational numbers for the dashboard (lag, DLQ, latency)."""
    target = install_sensor(faust_app)
    lags = consumer_lag(faust_app)
    return {
        "worker": str(faust_app.conf.canonical_url),
        "lag_total": sum(row.lag for row in lags),
        "lag": [{"topic": r.topic, "partition": r.partition, "lag": r.lag} for r in lags],
        "dlq_depth": target.last_dlq_depth,
        "decision_latency": target.decision_quantiles(),
        "decision_latencies_ms": [round(v * 1000, 3) for v in list(target.recent_decisions)[-256:]],
    }


@app.page("/metrics", name="metrics")
class MetricsView(web.View):
    """``GET /metrics``: Prometheus text format of this worker."""

    async def get(self, request: web.Request) -> web.Response:
        """200 with every EventPro metric of this worker."""
        target = install_sensor(self.app)
        await target.count_table_keys()
        body = generate_latest(target.registry)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0], status=200)
