"""The worker runs on the event loop its settings name (uvloop by default), with its garbage
collector tuned."""

from __future__ import annotations

import os

import aiohttp
from support.cluster import WorkerFactory
from support.waiting import wait_for

from eventpro.processes import THREAD_DUMP_SIGNAL


def test_a_worker_runs_on_uvloop_by_default(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(EVENTPRO_LOG_LEVEL="INFO")
    log = worker.log_path.read_text(errors="replace")
    assert "worker ready at" in log
    assert "on uvloop.Loop" in log, worker.log_tail()
    assert "gc thresholds (50000, 20, 100)" in log, worker.log_tail()


def test_the_young_gc_threshold_is_a_setting(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(EVENTPRO_LOG_LEVEL="INFO", EVENTPRO_GC_YOUNG_THRESHOLD="700")
    assert "gc thresholds (700, 20, 100)" in worker.log_path.read_text(errors="replace")


async def test_sigquit_writes_the_worker_threads_stacks_and_the_worker_goes_on(
    worker_factory: WorkerFactory,
) -> None:
    """The dump the harnesses take of a worker that ignores SIGTERM (see ManagedProcess.stop)."""
    worker = worker_factory()
    assert worker.pid is not None
    os.kill(worker.pid, THREAD_DUMP_SIGNAL)

    async def dumped() -> str | None:
        log = worker.log_path.read_text(errors="replace")
        return log if "in execute_from_commandline" in log else None

    log = await wait_for(dumped, 30, "the event loop thread's stack in the worker's log")
    assert log.count("most recent call first") >= 2, log  # the event loop and Faust's consumer
    async with aiohttp.ClientSession() as http, http.get(f"{worker.url}/health") as response:
        assert response.status == 200
    assert worker.is_running()
