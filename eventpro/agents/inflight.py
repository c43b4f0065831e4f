"""Bounded concurrent handling inside one agent, in order per key.

A slow gateway call must not stall the partition it came from: the agent hands each record to
:class:`InFlight`, which runs up to ``limit`` handlers at once and only makes the stream wait
when all slots are busy. Handlers for the same key (a reservation id) run one after another,
in arrival order, so a duplicate or a refund never overtakes the charge before it.

The agent acks each record when its handler finished; Faust commits an offset only once every
record before it was acked, so a crash re-delivers whatever was still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ("InFlight",)

logger = logging.getLogger(__name__)


class InFlight:
    """Runs coroutines with at most ``limit`` in flight, serialised per key."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"in-flight limit must be at least 1, got {limit}")
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._tails: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    async def submit(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Start ``work`` once a slot is free (waits only while all slots are busy)."""
        await self._slots.acquire()
        previous = self._tails.get(key)
        task = asyncio.ensure_future(self._run(previous, work))
        self._tasks.add(task)
        self._tails[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))

    async def _run(
        self, previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]
    ) -> None:
        if previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(previous)
        await work()

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._slots.release()
        self._tasks.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]
        if not task.cancelled() and task.exception() is not None:
            logger.error("in-flight handler failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait until every submitted handler finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
