"""The embedded single-node Kafka-protocol broker: TCP server, request dispatch and lifecycle.

Each connection is served by one task that reads a frame, handles it and writes the answer before it
reads the next, so pipelined requests are answered in order (as Kafka does). Long-polling fetches
wait on :meth:`Broker.wait_for_data` without blocking other connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from eventpro.broker.data_handlers import DATA_APIS, unsupported_api_versions_response
from eventpro.broker.group_handlers import GROUP_APIS
from eventpro.broker.groups import GroupConfig, GroupCoordinator
from eventpro.broker.log import LogConfig
from eventpro.broker.producer_ids import ProducerIdManager
from eventpro.broker.protocol import (
    ApiSpec,
    FrameError,
    RequestContext,
    decode_request,
    encode_response,
    peek_header,
)
from eventpro.broker.topics_store import TopicsStore
from eventpro.broker.transactions import TransactionConfig, TransactionCoordinator
from eventpro.broker.txn_handlers import TXN_APIS

__all__ = ("Broker", "BrokerConfig", "running_broker")

logger = logging.getLogger(__name__)

API_VERSIONS_KEY = 18
_SIZE_PREFIX_BYTES = 4
_MIN_REQUEST_BYTES = 8


@dataclass(frozen=True)
class BrokerConfig:
    """Broker settings.

    :param data_dir: where topics and group offsets live; ``None`` = a temporary directory that is
        removed on stop (tests). Default - ``None``.
    :param port: TCP port; 0 picks a free one. Default - ``9092``.
    :param group: consumer-group timing (initial rebalance delay). Default - ``GroupConfig()``.
    :param log: defaults for every partition log (segment size, retention, flush policy).
    :param max_frame_bytes: larger request frames close the connection (Kafka's
        ``socket.request.max.bytes``). Default - 100 MiB.
    :param auto_create_topics: create unknown topics named in Metadata requests that allow it.
    :param default_partitions: partitions of auto-created topics (Kafka's ``num.partitions``).
    :param maintenance_interval_s: how often retention and compaction run.
    :param transactions: transaction coordinator limits (max timeout, timeout check interval).
    """

    host: str = "127.0.0.1"
    port: int = 9092
    data_dir: Path | None = None
    node_id: int = 1
    cluster_id: str = "eventpro-embedded"
    advertised_host: str | None = None
    group: GroupConfig = field(default_factory=GroupConfig)
    log: LogConfig = field(default_factory=LogConfig)
    max_frame_bytes: int = 100 * 1024 * 1024
    auto_create_topics: bool = True
    default_partitions: int = 1
    maintenance_interval_s: float = 30.0
    transactions: TransactionConfig = field(default_factory=TransactionConfig)


class Broker:
    """A running broker: owns the topic store, the group coordinator and the TCP server."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig()
        self._tmp_dir: Path | None = None
        data_dir = self.config.data_dir
        if data_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="eventpro-broker-"))
            data_dir = self._tmp_dir
        self.data_dir = Path(data_dir)
        self.node_id = self.config.node_id
        self.cluster_id = self.config.cluster_id
        self.topics = TopicsStore(
            self.data_dir / "topics",
            defaults=self.config.log,
            default_partitions=self.config.default_partitions,
        )
        self.groups = GroupCoordinator(self.data_dir / "groups", self.config.group)
        self.producer_ids = ProducerIdManager(self.data_dir / "producer_ids.json")
        self.transactions = TransactionCoordinator(
            self.data_dir,
            self.topics,
            self.groups,
            self.producer_ids,
            self.config.transactions,
            on_markers=self.notify_data,
        )
        self.apis: dict[int, ApiSpec] = {
            spec.api_key: spec for spec in (*DATA_APIS, *GROUP_APIS, *TXN_APIS)
        }
        self.host = self.config.host
        self.port = self.config.port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._data_arrived = asyncio.Event()
        self._maintenance: asyncio.Task[None] | None = None
        self._started_at = 0.0

    @property
    def advertised_host(self) -> str:
        return self.config.advertised_host or self.host

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"{self.advertised_host}:{self.port}"

    async def start(self) -> None:
        """Recover storage, start the coordinator and listen."""
        self._started_at = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.topics.load()
        self.producer_ids.load()
        await self.groups.start()
        await self.transactions.start()
        self._server = await asyncio.start_server(
            self._on_connection, self.config.host, self.config.port, reuse_address=True
        )
        sockets = self._server.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._maintenance = asyncio.create_task(self._run_maintenance(), name="broker-maintenance")
        logger.info(
            "broker listening on %s (data dir %s, %d topics)",
            self.bootstrap,
            self.data_dir,
            len(self.topics.topics()),
        )

    async def stop(self) -> None:
        """Close connections, flush and close every log, persist group offsets."""
        if self._server is not None:
            self._server.close()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
        await self.transactions.close()
        await self.groups.close()
        self.topics.close()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
        logger.info("broker on %s stopped", self.bootstrap)

    def notify_data(self) -> None:
        """Wake every fetch that is long-polling for new records."""
        self._data_arrived.set()
        self._data_arrived = asyncio.Event()

    async def wait_for_data(self, seconds: float) -> None:
        """Wait until some partition gets new records, or ``seconds`` pass."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._data_arrived.wait(), seconds)

    async def _run_maintenance(self) -> None:
        while True:
            await asyncio.sleep(self.config.maintenance_interval_s)
            try:
                self.topics.run_maintenance(int(time.time() * 1000))
            except Exception:
                logger.exception("log maintenance (retention/compaction) failed; will retry")

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve_connection(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        client_host = peer[0] if isinstance(peer, tuple) else str(peer)
        try:
            while True:
                try:
                    prefix = await reader.readexactly(_SIZE_PREFIX_BYTES)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        logger.warning("closing %s: connection ended inside a size prefix", peer)
                    return
                size = int.from_bytes(prefix, "big", signed=True)
                if size < _MIN_REQUEST_BYTES or size > self.config.max_frame_bytes:
                    logger.warning(
                        "closing %s: request frame of %d bytes is outside 8..%d",
                        peer,
                        size,
                        self.config.max_frame_bytes,
                    )
                    return
                try:
                    body = await reader.readexactly(size)
                except asyncio.IncompleteReadError:
                    logger.warning(
                        "closing %s: connection ended inside a %d-byte frame", peer, size
                    )
                    return
                try:
                    response = await self._handle(body, client_host)
                except FrameError as exc:
                    logger.warning("closing %s: %s", peer, exc)
                    return
                if response is not None:
                    writer.write(response)
                    if writer.transport.get_write_buffer_size() > 1 << 20:
                        await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            logger.debug("connection from %s reset by peer", peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("closing %s: unexpected error while serving it", peer)
        finally:
            writer.close()

    async def _handle(self, body: bytes, client_host: str) -> bytes | None:
        api_key, api_version, correlation_id = peek_header(body)
        spec = self.apis.get(api_key)
        if api_key == API_VERSIONS_KEY and (spec is None or api_version > spec.max_version):
            # Kafka answers an ApiVersions version it lacks in v0, so the client can downgrade.
            return encode_response(correlation_id, unsupported_api_versions_response(self))
        if spec is None:
            raise FrameError(f"api_key={api_key} is not supported by this broker")
        if not spec.min_version <= api_version <= spec.max_version:
            raise FrameError(
                f"api_key={api_key} version {api_version} is outside the supported "
                f"{spec.min_version}..{spec.max_version}"
            )
        header, request = decode_request(body)
        ctx = RequestContext(
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
            client_id=getattr(header, "client_id", None),
            client_host=client_host,
            broker=self,
        )
        try:
            response = await spec.handler(ctx, request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("api_key=%d v%d handler failed", api_key, api_version)
            raise FrameError(f"api_key={api_key} v{api_version} handler failed: {exc}") from exc
        if response is None:
            return None
        return encode_response(correlation_id, response)


@contextlib.asynccontextmanager
async def running_broker(
    data_dir: Path | None = None, *, host: str = "127.0.0.1", port: int = 0, **options: object
) -> AsyncIterator[Broker]:
    """Start a broker for the length of the block (a free port by default); yields it.

    ``options`` are further :class:`BrokerConfig` fields. Use ``broker.bootstrap`` as the
    clients' bootstrap address.
    """
    broker = Broker(BrokerConfig(host=host, port=port, data_dir=data_dir, **options))  # type: ignore[arg-type]
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
