"""aiokafka's broker connection, made to fail cleanly on uvloop when its socket has closed.

aiokafka turns an ``OSError`` from writing a request into a Kafka connection error, which every
caller retries. uvloop raises ``RuntimeError`` instead for a transport closed underneath (the
broker went away and the connection has not noticed yet). That error ended aiokafka's metadata
task for good; every later metadata refresh then waited forever, so the consumer's group
coordinator was never found again after a broker restart: the worker held its batches and
ignored SIGTERM (seen in chaos runs, twice in three with seed 1).
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors
from aiokafka.conn import AIOKafkaConnection, CloseReason

__all__ = ("fail_cleanly_on_closed_transports",)

_aiokafka_send = AIOKafkaConnection.send


def _send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
    """aiokafka's ``send``, refusing at once on a transport that is closing or closed."""
    writer = self._writer  # type: ignore[attr-defined]
    if writer is not None and writer.transport.is_closing():
        self.close(reason=CloseReason.CONNECTION_BROKEN)
        raise errors.KafkaConnectionError(f"Connection at {self.host}:{self.port} closed")
    return _aiokafka_send(self, request, expect_response)


def fail_cleanly_on_closed_transports() -> None:
    """Install :func:`_send` as aiokafka's ``AIOKafkaConnection.send`` (idempotent)."""
    AIOKafkaConnection.send = _send  # type: ignore[method-assign]
