"""The one place that turns :class:`~eventpro.settings.Settings` into a ``faust.App``.

``app`` is built from the process settings at import time because ``faust -A eventpro.app``
looks for a module attribute named ``app``. Tables, agents and views are declared against it
in :mod:`eventpro.tables`, :mod:`eventpro.agents` and :mod:`eventpro.web`, and found by
autodiscovery (the worker imports those packages before it starts).

Faust reads its own settings from the environment too (``WEB_PORT``, ``BROKER_URL``, ...);
``env={}`` switches that off so only ``EVENTPRO_*`` variables configure a worker.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust
from faust.types import TransportT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from eventpro.security import kafka_credentials
from eventpro.settings import Settings, get_settings
from eventpro.transport import DiscardNotingFlowControl, EventProTransport

__all__ = ("AUTODISCOVER", "EventProApp", "app", "create_app", "faust_options", "worker_datadir")

logger = logging.getLogger(__name__)

AUTODISCOVER: tuple[str, ...] = (
    "eventpro.tables",
    "eventpro.agents",
    "eventpro.analytics",
    "eventpro.monitoring",
    "eventpro.web",
)
"""Packages whose ``@app.agent`` / ``@app.page`` / ``@app.timer`` declarations make up the app."""

KAFKA_SCHEMES = frozenset({"kafka", "aiokafka"})
"""Broker URL schemes served by Faust's aiokafka transport."""

PRODUCER_LINGER_SECONDS = 0.005
"""Faust's default linger of 0 sends one tiny batch per record; 5 ms batches an on-sale burst."""

PRODUCER_MAX_BATCH_BYTES = 262_144
"""aiokafka holds one batch per partition and makes every later record wait while it is full.
Faust hands records over one at a time, so with the default 16 KiB one busy changelog partition
stalled all output (the small benchmark's saga: 257 -> 490 requests/s with 256 KiB)."""


def worker_datadir(settings: Settings) -> Path:
    """Where this worker keeps its RocksDB tables: ``<data_dir>/worker``."""
    return Path(settings.data_dir) / "worker"


def faust_options(settings: Settings) -> dict[str, object]:
    """The keyword arguments of ``faust.App`` for ``settings`` (pure, so it can be tested)."""
    # Peers dial canonical_url; a worker bound to 0.0.0.0 advertises a routable name instead.
    canonical_host = settings.web_advertised_host or settings.web_host
    canonical_url = f"http://{canonical_host}:{settings.web_port}"
    return {
        "broker": settings.broker_url,
        "broker_credentials": kafka_credentials(settings),
        "store": settings.store,
        "datadir": str(worker_datadir(settings)),
        "autodiscover": list(AUTODISCOVER),
        "env": {},
        # Every record is bytes on the wire; agents decode with eventpro.schemas so a bad
        # record goes to the DLQ instead of crashing the stream in Faust's deserialiser.
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "processing_guarantee": settings.processing_guarantee,
        "table_standby_replicas": settings.table_standby_replicas,
        "producer_linger": PRODUCER_LINGER_SECONDS,
        "producer_max_batch_size": PRODUCER_MAX_BATCH_BYTES,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        # A lone worker gets its partitions within seconds; a dead worker is noticed in 10 s.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
        "broker_rebalance_timeout": 20.0,
        "broker_request_timeout": 30.0,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        # table_route compares owner URLs with canonical_url, so it must be what peers dial.
        "canonical_url": canonical_url,
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
        "web_router_enabled": True,
    }


class EventProApp(faust.App):
    """``faust.App`` that creates its topics with the right partition counts when it starts."""

    eventpro_settings: Settings

    async def on_start(self) -> None:
        self._drop_agents_not_run()
        await super().on_start()
        from eventpro.agents.topic_setup import ensure_topics, required_topics

        wanted = required_topics(self.eventpro_settings, self.tables.values())
        await ensure_topics(self.eventpro_settings, wanted)

    def _drop_agents_not_run(self) -> None:
        """Leave out the agents ``EVENTPRO_AGENTS`` does not name (before they subscribe)."""
        dropped = [name for name in self.agents if not self.eventpro_settings.runs_agent(name)]
        for name in dropped:
            del self.agents[name]
        if dropped:
            logger.warning(
                "EVENTPRO_AGENTS=%s: not running %s",
                self.eventpro_settings.agents,
                ", ".join(dropped),
            )

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        """Faust's flow control, noting the records a resume throws away (see
        :class:`~eventpro.transport.DiscardNotingFlowControl`)."""
        return DiscardNotingFlowControl(loop=self.loop)

    def _new_transport(self) -> TransportT:
        """Kafka URLs get :class:`~eventpro.transport.EventProTransport`; others Faust's own."""
        url = self.conf.broker_consumer[0]
        if url.scheme in KAFKA_SCHEMES:
            return EventProTransport(self.conf.broker_consumer, self)
        return super()._new_transport()


def create_app(settings: Settings) -> EventProApp:
    """A new app configured from ``settings`` (no tables or agents attached)."""
    new_app = EventProApp(settings.app_id, **faust_options(settings))
    new_app.eventpro_settings = settings
    return new_app


app: EventProApp = create_app(get_settings())
