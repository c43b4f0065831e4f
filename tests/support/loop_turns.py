"""How often other tasks got to run while a test's code worked on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class LoopTurns:
    """A task counting its turns on the event loop for the length of an ``async with`` block:
    code that never gives up the loop leaves it none."""

    def __init__(self) -> None:
        self.turns = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._count())
        await asyncio.sleep(0)  # its first turn: counting from here
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _count(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)
