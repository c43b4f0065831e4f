"""aiokafka on uvloop, against the broker: a connection whose socket closed underneath fails as
a Kafka connection error, and the client's metadata task lives on (eventpro/kafka_conn.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop
from aiokafka import AIOKafkaClient, errors
from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol.metadata import MetadataRequest

from eventpro.kafka_conn import _aiokafka_send, fail_cleanly_on_closed_transports


@pytest.fixture()
def aiokafka_as_shipped() -> Iterator[None]:
    AIOKafkaConnection.send = _aiokafka_send  # type: ignore[method-assign]
    try:
        yield
    finally:
        fail_cleanly_on_closed_transports()


async def _client_with_a_dead_socket(bootstrap: str) -> tuple[AIOKafkaClient, AIOKafkaConnection]:
    """A bootstrapped client whose broker connection's transport was closed underneath it,
    as when the broker is killed and aiokafka has not read the end of the stream yet."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await client.bootstrap()
    node_id = next(iter(client.cluster.brokers())).nodeId
    assert await client.ready(node_id)
    conn = client._conns[(node_id, 0)]
    broker = client.cluster.broker_metadata(node_id)
    _, dead = await asyncio.open_connection(broker.host, broker.port)
    dead.close()
    await dead.wait_closed()
    conn._writer = dead  # type: ignore[attr-defined]  # its reader has not seen the end yet
    return client, conn


def _on_uvloop(coro_fn: object, *args: object) -> object:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro_fn(*args))  # type: ignore[operator]


def test_aiokafka_as_shipped_lets_uvloop_s_runtime_error_through(
    shared_broker: str, aiokafka_as_shipped: None
) -> None:
    """The bug being fixed: the error that ended aiokafka's metadata task on uvloop."""

    async def scenario() -> BaseException | None:
        client, conn = await _client_with_a_dead_socket(shared_broker)
        try:
            conn.send(MetadataRequest([]))
        except Exception as exc:  # the type is what is being checked
            return exc
        finally:
            await client.close()
        return None

    error = _on_uvloop(scenario)
    assert isinstance(error, RuntimeError), error


def test_a_request_on_a_closed_socket_fails_as_a_connection_error_and_metadata_recovers(
    shared_broker: str,
) -> None:
    fail_cleanly_on_closed_transports()

    async def scenario() -> tuple[BaseException | None, bool, bool]:
        client, conn = await _client_with_a_dead_socket(shared_broker)
        try:
            try:
                conn.send(MetadataRequest([]))
            except errors.KafkaConnectionError as exc:
                error: BaseException | None = exc
            else:
                error = None
            updated = await asyncio.wait_for(client.force_metadata_update(), timeout=10)
            return error, bool(updated), client._sync_task.done()
        finally:
            await client.close()

    error, updated, sync_task_ended = _on_uvloop(scenario)  # type: ignore[misc]
    assert isinstance(error, errors.KafkaConnectionError)
    assert updated  # a new connection brought the metadata
    assert not sync_task_ended
