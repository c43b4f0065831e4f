"""A stand-in for the Faust stream event an agent's ``submit`` receives (unit tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeMessage:
    """The record behind a :class:`StreamEvent`: what ``raw_record`` reads."""

    value: bytes
    topic: str = "reservations"
    partition: int = 1
    offset: int = 3
    key: bytes | None = b"ev"
    headers: list[Any] = field(default_factory=list)


class StreamEvent:
    """A stream event over one record; counts its acknowledgements."""

    def __init__(self, value: bytes, topic: str = "reservations") -> None:
        self.message = FakeMessage(value, topic)
        self.acks = 0

    def ack(self) -> None:
        self.acks += 1
