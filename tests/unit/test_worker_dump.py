"""The SIGUSR1 dump shows where the tasks of another thread's event loop are waiting."""

from __future__ import annotations

import asyncio
import threading

from eventpro.worker import consumer_thread_tasks


async def _lookup_coordinator(found: asyncio.Event) -> None:
    await found.wait()


async def _coordination_routine(found: asyncio.Event) -> None:
    await _lookup_coordinator(found)


def test_the_dump_shows_each_task_await_chain_on_another_thread_loop() -> None:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    found: asyncio.Event | None = None
    tasks: list[asyncio.Task[None]] = []

    def serve() -> None:
        nonlocal found
        asyncio.set_event_loop(loop)
        found = asyncio.Event()
        tasks.append(loop.create_task(_coordination_routine(found), name="coordination"))
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert started.wait(5)
        dump = consumer_thread_tasks(loop)
    finally:
        loop.call_soon_threadsafe(found.set)  # type: ignore[union-attr]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert "CONSUMER THREAD TASKS (1)" in dump
    assert "* coordination" in dump
    routine = dump.index("in _coordination_routine")
    assert dump.index("in _lookup_coordinator") > routine  # outermost first
