"""Commits only between records, so an exactly-once transaction never splits a record.

With ``processing_guarantee=exactly_once`` Faust commits each partition's transaction (its
output records, changelog writes and consumed offsets) from a timer task, while agents keep
processing. A record whose outputs were already sent but which was not yet acknowledged
ended up with its outputs in the committed transaction and its offset outside it; after a
crash it was processed again, and a read_committed consumer saw its outcome twice.

Agents wrap the handling of one record, up to its acknowledgement, in
:meth:`CommitGate.processing`; the consumer (:class:`eventpro.transport.EventProConsumer`)
commits inside :meth:`CommitGate.closed`, which stops new records from starting and waits for
the ones in progress. Faust acknowledges a record of an ``events()`` stream synchronously when
the agent asks for the next one, so leaving the gate at the end of the loop body is enough.
In at-least-once mode the consumer does not close the gate, and entering it costs one check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ("CommitGate", "GateTimeout", "commit_gate")

logger = logging.getLogger(__name__)


class GateTimeout(Exception):
    """Records were still in progress when the commit had to give up waiting for them."""


class CommitGate:
    """Readers (records in progress) and one writer (a commit), the writer preferred."""

    def __init__(self) -> None:
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()

    @property
    def active(self) -> int:
        """Records in progress now."""
        return self._active

    @asynccontextmanager
    async def processing(self) -> AsyncIterator[None]:
        """Handle one record; waits while a commit is in progress."""
        if not self._open.is_set():
            await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    @asynccontextmanager
    async def closed(self, limit_s: float) -> AsyncIterator[None]:
        """Stop new records and wait until none is in progress, for a commit.

        :raises GateTimeout: records were still in progress after ``limit_s`` seconds; the
            caller must not commit (it can try again later).
        """
        self._open.clear()
        try:
            try:
                await asyncio.wait_for(self._idle.wait(), limit_s)
            except TimeoutError:
                raise GateTimeout(
                    f"{self._active} record(s) still in progress after {limit_s:.1f}s"
                ) from None
            yield
        finally:
            self._open.set()


commit_gate = CommitGate()
"""The gate of this process's app (one Faust app per worker process)."""
