"""EventPro's Faust sensor: Prometheus metrics from Faust's own hooks, one registry per app.

The sensor sees every record a stream handles, every record produced and every HTTP request
(``faust.Sensor`` callbacks), so agents and views carry no metric code. Each sensor owns its
:class:`prometheus_client.CollectorRegistry`, so several apps in one process (tests) never
collide on metric names in the global registry.

Latencies:

- ``eventpro_record_processing_seconds{agent}``: from a record entering an agent's stream to
  the agent finishing with it.
- ``eventpro_decision_latency_seconds``: from a ticket request being produced (its Kafka
  timestamp) to the inventory agent having decided it: what a buyer waits for.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import faust
from faust import web
from faust.types import TP, EventT, StreamT
from faust.types.transports import ProducerT
from faust.types.tuples import PendingMessage
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventpro.monitoring.lag import consumer_lag
from eventpro.tables.stores import count_keys

__all__ = ("LATENCY_BUCKETS", "EventProSensor", "count_sent", "quantile")

logger = logging.getLogger(__name__)

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
RECENT_LATENCIES = 2048
"""Decision latencies kept for the dashboard's p50/p99."""


def quantile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``; ``None`` when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


class _StateCollector(Collector):
    """Gauges read at scrape time: consumer lag, and the table sizes
    :meth:`EventProSensor.count_table_keys` counted for this scrape."""

    def __init__(self, sensor: EventProSensor) -> None:
        self.sensor = sensor

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "eventpro_consumer_lag",
            "Records not yet committed, per source partition of this worker",
            labels=["topic", "partition"],
        )
        sizes = GaugeMetricFamily(
            "eventpro_table_keys", "Keys stored by this worker, per table", labels=["table"]
        )
        return lag, sizes

    def describe(self) -> Iterator[Metric]:
        """Names only: registering must not open table stores or touch the consumer."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        app = self.sensor.app
        lag, sizes = self._families()
        for row in consumer_lag(app):
            lag.add_metric([row.topic, str(row.partition)], row.lag)
        yield lag
        for name, keys in sorted(self.sensor.table_keys.items()):
            sizes.add_metric([name], keys)
        yield sizes


class EventProSensor(faust.Sensor):
    """Counts and times records, sends and HTTP requests into its own registry."""

    def __init__(
        self,
        app: faust.App,
        *,
        decision_topic: str,
        decision_agent: str,
        retry_topics: Iterable[str],
        dlq_topic: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.decision_topic = decision_topic
        self.decision_agent = decision_agent
        self.retry_topics = frozenset(retry_topics)
        self.dlq_topic = dlq_topic
        self.recent_decisions: deque[float] = deque(maxlen=RECENT_LATENCIES)
        self.last_dlq_depth: int | None = None
        self.broker_error: str | None = None
        self.table_keys: dict[str, int] = {}
        """Keys per table at the last :meth:`count_table_keys` (``eventpro_table_keys``)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.records_processed = Counter(
            "eventpro_records_processed",
            "Records handled by an agent",
            ["agent", "topic"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "eventpro_record_processing_seconds",
            "Time an agent spent on one record",
            ["agent"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_seconds = Histogram(
            "eventpro_decision_latency_seconds",
            "Ticket request produced -> decided by the inventory agent (end to end)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.records_sent = Counter(
            "eventpro_records_sent", "Records produced", ["topic"], registry=r
        )
        self.retries = Counter(
            "eventpro_retries", "Records sent to a retry topic", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "eventpro_dead_letters", "Records sent to the dead-letter topic", registry=r
        )
        self.send_errors = Counter(
            "eventpro_send_errors", "Records the producer failed to send", registry=r
        )
        self.dlq_depth = Gauge(
            "eventpro_dlq_depth", "Records in the dead-letter topic (all workers)", registry=r
        )
        self.rebalances = Counter("eventpro_rebalances", "Rebalances started", registry=r)
        self.http_seconds = Histogram(
            "eventpro_http_request_seconds",
            "HTTP request latency by view",
            ["view", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_StateCollector(self))

    async def count_table_keys(self) -> dict[str, int]:
        """Count each table's keys for ``eventpro_table_keys``, before a scrape is rendered
        (:func:`~eventpro.tables.stores.count_keys`: a chunk at a time, the agents run in
        between)."""
        counts = {}
        for name, table in sorted(self.app.tables.items()):
            try:
                counts[name] = await count_keys(table.data)
            except Exception as exc:  # store closed or not opened yet
                logger.debug("no size for table %s: %r", name, exc)
        self.table_keys = counts
        return counts

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT, event: EventT
    ) -> dict[str, float]:
        return {"start": time.monotonic()}

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT,
        event: EventT,
        state: dict[str, float] | None = None,
    ) -> None:
        agent = stream.prefix or "stream"
        self.records_processed.labels(agent, tp.topic).inc()
        if state is not None:
            self.processing_seconds.labels(agent).observe(time.monotonic() - state["start"])
        if tp.topic == self.decision_topic and agent == self.decision_agent:
            produced = event.message.timestamp
            if produced:
                latency = max(time.time() - float(produced), 0.0)
                self.decision_seconds.observe(latency)
                self.recent_decisions.append(latency)

    def on_send_initiated(
        self,
        producer: ProducerT,
        topic: str,
        message: PendingMessage,
        keysize: int,
        valsize: int,
    ) -> None:
        self.on_records_sent(topic, 1)

    def on_records_sent(self, topic: str, count: int) -> None:
        """``count`` records produced to ``topic``: one per Faust send, or a partition batch
        of :mod:`eventpro.produce` (which bypasses Faust's send hooks)."""
        self.records_sent.labels(topic).inc(count)
        if topic in self.retry_topics:
            self.retries.labels(topic).inc(count)
        elif topic == self.dlq_topic:
            self.dead_letters.inc(count)

    def on_send_error(self, producer: ProducerT, exc: BaseException, state: Any) -> None:
        self.send_errors.inc()

    def on_rebalance_start(self, app: faust.App) -> dict[str, float]:
        self.rebalances.inc()
        return super().on_rebalance_start(app)

    def on_web_request_end(
        self,
        app: faust.App,
        request: web.Request,
        response: web.Response | None,
        state: dict[str, float],
        *,
        view: web.View | None = None,
    ) -> None:
        status = str(getattr(response, "status", 500)) if response is not None else "500"
        name = type(view).__name__ if view is not None else "unknown"
        elapsed = time.monotonic() - state.get("time_start", time.monotonic())
        self.http_seconds.labels(name, request.method, status).observe(elapsed)

    def decision_quantiles(self) -> dict[str, float | None]:
        """p50/p99 of recent decision latencies, in milliseconds."""
        recent = list(self.recent_decisions)
        p50, p99 = quantile(recent, 0.5), quantile(recent, 0.99)
        return {
            "p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p99_ms": None if p99 is None else round(p99 * 1000, 2),
            "samples": len(recent),
        }


def count_sent(app: faust.App, topic: str, count: int) -> None:
    """Count records produced past Faust's send path in ``app``'s EventPro sensors."""
    for sensor in app.sensors:
        if isinstance(sensor, EventProSensor):
            sensor.on_records_sent(topic, count)
