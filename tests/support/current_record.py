"""A record that Faust's table reads and writes take as the current event (unit tests)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from types import SimpleNamespace

from faust.streams import _current_event


class RecordEvent:
    """What a table read or write looks at in its record: the message's topic and partition."""

    def __init__(self, partition: int = 0, topic: str = "ticket-requests") -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition)


@contextlib.contextmanager
def current_record(partition: int = 0, topic: str = "ticket-requests") -> Iterator[RecordEvent]:
    """A record of ``topic`` / ``partition`` is Faust's current event inside the block, so
    table reads and writes go to that partition's store."""
    event = RecordEvent(partition, topic)
    token = _current_event.set(weakref.ref(event))
    try:
        yield event
    finally:
        _current_event.reset(token)
