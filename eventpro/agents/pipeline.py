"""Finish decided batches in order, in a task of their own, while the agent decides the next.

At least once, the inventory agent writes a batch in three steps, each after the broker
acknowledged the previous one (:class:`eventpro.tables.batching.WriteBackState`). Waiting
for those acknowledgements inside the agent also stopped its intake (``take_events`` holds
its buffer while a batch is handled): the batches got small and the worker 5x slower. The
agent now decides a batch, hands it to a :class:`BatchFinisher` and goes on with the next;
the finisher runs each batch's remaining steps, strictly one batch after the other.

A failure is kept: every batch still queued is given up (its records are never
acknowledged, so they are read again from the partition's commit point) and the next
:meth:`BatchFinisher.submit` raises it, which stops the agent as a failed batch did before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ("BatchFinisher",)

logger = logging.getLogger(__name__)

B = TypeVar("B")


class BatchFinisher(Generic[B]):
    """Runs ``finish`` on each submitted batch, in submission order, in a task of its own.

    :param finish: the rest of a batch's work; acknowledges its records when done.
    :param give_up: called for a batch that will not be finished (an earlier failure, a
        stop); it must make sure the batch's records are never acknowledged.
    :param depth: batches that may wait behind the one being finished before
        :meth:`submit` waits (bounds the memory and the work a crash leaves to redo).
    """

    def __init__(
        self,
        finish: Callable[[B], Awaitable[None]],
        give_up: Callable[[B], None],
        *,
        depth: int = 2,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._finish = finish
        self._give_up = give_up
        self.depth = depth
        self.error: BaseException | None = None
        """The exception that stopped finishing batches, if one did."""
        self._queue: asyncio.Queue[B] | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        """A batch was taken from the queue and is not finished or given up yet."""

    @property
    def pending(self) -> int:
        """Batches submitted and not finished or given up yet (queued, or being finished)."""
        queue = self._queue
        return 0 if queue is None else queue.qsize() + self._busy

    def raise_if_failed(self) -> None:
        """Raise the failure that stopped finishing batches, if there was one."""
        if self.error is not None:
            raise self.error

    async def submit(self, batch: B) -> None:
        """Queue ``batch`` (waits while ``depth`` batches wait already).

        :raises BaseException: an earlier batch failed, or the finishing task ended;
            ``batch`` is given up.
        """
        if self.error is not None:
            self._give_up(batch)
            raise self.error
        if self._task is None or self._queue is None:
            self._queue = asyncio.Queue(self.depth)
            self._task = asyncio.ensure_future(self._run(self._queue))
            self._task.add_done_callback(self._ended)
        task, queue = self._task, self._queue
        if queue.full():
            # Wait for room, or for the task to end (it would never make room then).
            put = asyncio.ensure_future(queue.put(batch))
            try:
                await asyncio.wait((put, task), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not put.done():
                    put.cancel()
            if task.done():  # nothing finishes this batch, even if it got into the queue
                if put.done() and not put.cancelled():
                    self._give_up_queued(queue)
                else:
                    self._give_up(batch)
                self.raise_if_failed()
        else:
            queue.put_nowait(batch)

    async def drained(self) -> None:
        """Wait until every submitted batch was finished or given up."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self) -> None:
        """Stop finishing: the batch in progress and those queued are given up."""
        task, queue = self._task, self._queue
        self._task = self._queue = None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if queue is not None:
            self._give_up_queued(queue)
        self.error = None

    async def _run(self, queue: asyncio.Queue[B]) -> None:
        while True:
            batch = await queue.get()
            self._busy = True
            try:
                if self.error is not None:
                    self._give_up(batch)
                else:
                    await self._finish(batch)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    self._give_up(batch)  # stop(): this task is being cancelled
                    raise
                # A future awaited in ``finish`` was cancelled (a producer stopping, say):
                # that batch failed like any other, and this task goes on giving up.
                self._fail(batch, queue, exc)
            except BaseException as exc:
                self._fail(batch, queue, exc)
            finally:
                self._busy = False
                queue.task_done()

    def _fail(self, batch: B, queue: asyncio.Queue[B], exc: BaseException) -> None:
        self.error = exc
        queued = queue.qsize()
        self._give_up(batch)
        self._give_up_queued(queue)
        logger.critical(
            "a batch could not be written or sent; it and the %d batch(es) after it are not "
            "acknowledged, so their records are read again from the partition's commit "
            "point. Check the worker's data dir (RocksDB) and the broker",
            queued,
            exc_info=exc,
        )

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The task ended: unless :meth:`stop` ended it, nothing finishes batches any more."""
        if task is not self._task:
            return
        if self.error is None:
            self.error = RuntimeError("the task finishing batches ended unexpectedly")
            logger.critical("the task finishing batches was cancelled; the agent stops")
        if self._queue is not None:
            self._give_up_queued(self._queue)

    def _give_up_queued(self, queue: asyncio.Queue[B]) -> None:
        while not queue.empty():
            self._give_up(queue.get_nowait())
            queue.task_done()
