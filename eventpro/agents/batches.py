"""Batches of a Faust stream's events that grow with the backlog: :func:`take_batches`.

Faust's ``Stream.take_events(max_, within)`` stops reading the stream while the agent handles
a batch and then waits ``within`` for the next one, however many records wait in the
partitions. Under a backlog its batches hold what one ``within`` lets through (about 55
records at 20 ms in the small benchmark), and every per-batch cost (a changelog write step
per table partition, a Kafka batch per output partition, persisted offsets) is paid again for
each. A longer ``within`` makes batches larger but adds its wait to every decision at low load.

:func:`take_batches` asks the consumer how far behind the partitions are: when at least a full
batch is already waiting in them, a batch lingers up to ``behind_within`` to fill, so batches
grow under a backlog (where that wait is small beside the queueing); otherwise it waits at
most ``within`` after its first record, as before. It keeps reading while a batch is handled,
up to ``max_`` records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
from faust.types import TP, EventT

__all__ = ("Lag", "consumer_lag", "take_batches")

Lag = Callable[[TP, int], int]
"""How many records wait in a partition after an offset (``0`` if unknown)."""


def consumer_lag(app: faust.App) -> Lag:
    """The :data:`Lag` ``app``'s consumer knows: the high watermark of its last fetch."""

    def records_after(tp: TP, offset: int) -> int:
        return int(app.consumer.highwater(tp)) - offset - 1

    return records_after


async def take_batches(
    stream: faust.StreamT[Any],
    max_: int,
    within: float,
    *,
    behind_within: float,
    lag: Lag,
) -> AsyncIterator[list[EventT]]:
    """Yield lists of at most ``max_`` events of ``stream``, in order.

    A batch is yielded once it holds ``max_`` events, or ``within`` seconds after its first
    event; when the partitions read so far hold at least ``max_`` more records (``lag`` after
    the last offset read from each), ``behind_within`` seconds after the batch was asked for.
    Each event is acknowledged when the loop body that got its batch is done (as
    ``take_events`` does); hold it longer with ``event.message.incref()``.

    :raises ValueError: ``max_ < 1``, or a negative wait.
    """
    if max_ < 1:
        raise ValueError(f"max_ must be at least 1, got {max_}")
    if within < 0 or behind_within < 0:
        raise ValueError(f"waits must not be negative, got {within} and {behind_within}")
    loop = asyncio.get_running_loop()
    waiting: list[EventT] = []
    last_read: dict[TP, int] = {}
    """The offset of the last event read from each partition."""
    first_arrived = 0.0
    arrived = asyncio.Event()
    """Set when ``waiting`` is not empty."""
    full = asyncio.Event()
    """Set when ``waiting`` holds ``max_`` events; the reader stops until they are taken."""
    taken = asyncio.Event()
    taken.set()

    def behind() -> bool:
        waiting_there = 0
        for tp, offset in list(last_read.items()):
            try:
                waiting_there += max(0, lag(tp, offset))
            except Exception:  # revoked since: no longer ours to wait for
                del last_read[tp]
        return waiting_there >= max_

    async def add(value: Any) -> Any:
        nonlocal first_arrived
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches got a value without its event")
        waiting.append(event)
        last_read[event.message.tp] = event.message.offset
        if len(waiting) == 1:
            first_arrived = loop.time()
            arrived.set()
        if len(waiting) >= max_:
            full.set()
            taken.clear()
            await stream.wait(taken)  # type: ignore[arg-type]
        return value

    acks_were_enabled = stream.enable_acks
    stream.enable_acks = False  # events are acknowledged below, once handled
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # type: ignore[attr-defined]
    try:
        while not stream.should_stop:
            if not waiting:
                arrived.clear()
                await stream.wait_for_stopped(arrived)  # type: ignore[arg-type]
                if not waiting:
                    continue
            deadline = loop.time() + behind_within if behind() else first_arrived + within
            linger = deadline - loop.time()
            if linger > 0 and len(waiting) < max_:
                await stream.wait_for_stopped(full, timeout=linger)  # type: ignore[arg-type]
            batch = waiting.copy()  # never more than max_: the reader waits at max_
            waiting.clear()
            full.clear()
            taken.set()
            try:
                yield batch
            finally:
                for event in batch:
                    await stream.ack(event)
    finally:
        stream.enable_acks = acks_were_enabled
        stream._processors.remove(add)  # type: ignore[attr-defined]
        taken.set()
