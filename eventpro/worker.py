"""Run one Faust worker in this process: what ``eventpro worker`` and ``eventpro dev`` call.

The app in :mod:`eventpro.app` is built from the process settings when it is first imported,
so :func:`run_worker` installs the given settings (as ``EVENTPRO_*`` variables, which worker
subprocesses inherit too) *before* importing it. Once tables are recovered and the web server
listens, one line goes to stdout::

    EventPro worker ready: http://127.0.0.1:6066

Scripts and tests wait for that line (or poll ``GET /ready``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import faust

from eventpro.kafka_conn import fail_cleanly_on_closed_transports
from eventpro.processes import enable_thread_dumps, exit_with_parent
from eventpro.settings import Settings, get_settings

__all__ = (
    "GC_OLDER_THRESHOLDS",
    "READY_PREFIX",
    "install_settings",
    "run_worker",
    "tune_garbage_collector",
    "use_event_loop",
)

logger = logging.getLogger(__name__)

READY_PREFIX = "EventPro worker ready: "
"""Start of the line printed once the worker serves its API from recovered tables."""


def install_settings(settings: Settings) -> None:
    """Make ``settings`` the process settings (``get_settings()`` returns an equal value).

    :raises RuntimeError: the app was already built from different settings in this process.
    """
    for name, value in settings.model_dump(mode="json").items():
        if value is None:  # unset: the environment must not say "None"
            os.environ.pop(f"EVENTPRO_{name.upper()}", None)
        else:
            os.environ[f"EVENTPRO_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    app_module = sys.modules.get("eventpro.app")
    if app_module is not None:
        built = app_module.app.conf
        if built.id != settings.app_id or int(built.web_port) != settings.web_port:
            raise RuntimeError(
                "eventpro.app was imported with other settings before run_worker(); call "
                "run_worker() before importing eventpro.app, agents or tables"
            )


def use_event_loop(name: str) -> str:
    """Make ``name``'s loop the one every new event loop of this process is (the worker's and
    Faust's consumer thread's); returns the loop actually used.

    uvloop runs the worker's callbacks, futures and sockets in C: asyncio's scheduling was
    about a fifth of the reservation stage's CPU. Without uvloop installed, asyncio's.
    """
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: nocover - installed wherever the worker runs (Linux)
            logger.warning("uvloop is not installed; the worker runs on asyncio's event loop")
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            fail_cleanly_on_closed_transports()
            return "uvloop"
    asyncio.set_event_loop_policy(None)
    return "asyncio"


GC_OLDER_THRESHOLDS = (20, 100)
"""Collections of the younger generation between two of the next one (Python's: 10, 10)."""


def tune_garbage_collector(young_threshold: int) -> tuple[int, int, int]:
    """Collect cycles less often, and never scan what the worker built at start; returns the
    new thresholds.

    Each record allocates a few dozen container objects that reference counting frees at
    once; with Python's default (a young collection every 700 allocations, an old one every
    100 young ones) the collector kept walking them and the long-lived modules, app, agents
    and tables. Those are frozen (``gc.freeze``) here, after start-up imports. Measured on the
    small benchmark's reservation stage: 16% less CPU per request, the same peak RSS.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, *GC_OLDER_THRESHOLDS)
    return gc.get_threshold()


class _EventProWorker(faust.Worker):
    """A Faust worker that prints one readiness line instead of a spinner."""

    def __init__(
        self, *args: Any, ready_out: IO[str], on_ready: Callable[[str], None] | None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._ready_out = ready_out
        self._on_ready = on_ready

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        url = str(self.app.conf.canonical_url)
        loop = type(asyncio.get_running_loop())
        logger.info(
            "worker ready at %s on %s.%s, gc thresholds %s",
            url,
            loop.__module__,
            loop.__qualname__,
            gc.get_threshold(),
        )
        print(f"{READY_PREFIX}{url}", file=self._ready_out, flush=True)
        if self._on_ready is not None:
            self._on_ready(url)

    async def _cry(self) -> None:
        """SIGUSR1: besides mode's thread/task dump, print where each agent and each task of
        the Kafka consumer thread is awaiting.

        mode shows only a task's top frame, and only the main loop's; a stuck agent or group
        coordination is found by its await chain.
        """
        await super()._cry()
        print(self.app.agents.human_tracebacks(), file=self.stderr, flush=True)
        thread = getattr(self.app.consumer, "_thread", None)
        loop = getattr(thread, "thread_loop", None)
        if loop is not None:
            print(consumer_thread_tasks(loop), file=self.stderr, flush=True)


def consumer_thread_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """The await chain of every task on the Kafka consumer thread's loop.

    The group coordination of aiokafka runs there; a worker that lost its coordinator after a
    broker restart and never found it again showed nothing of it in mode's dump.
    """
    try:
        tasks = list(asyncio.all_tasks(loop))  # another thread's loop: a snapshot, best effort
    except RuntimeError as exc:
        return f"consumer thread tasks not readable: {exc!r}"
    lines = [f"CONSUMER THREAD TASKS ({len(tasks)})"]
    for task in tasks:
        lines.append(f"* {task.get_name()}")
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return "\n".join(lines)


def discard_untrusted_tables(settings: Settings, tabledir: Path) -> bool:
    """Under exactly_once, delete the local table stores before the worker starts.

    Faust applies a table write to RocksDB at once, also when its transaction is later
    aborted (the process died before the commit). Only the committed changelog is the truth,
    so the tables are rebuilt from it (read_committed) instead of trusting the local copy.
    Returns whether anything was deleted.
    """
    if settings.processing_guarantee != "exactly_once" or not tabledir.exists():
        return False
    logger.info("exactly_once: rebuilding the tables from their changelogs (%s removed)", tabledir)
    shutil.rmtree(tabledir)
    return True


def run_worker(
    settings: Settings | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
    ready_out: IO[str] | None = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM; blocks, then exits the process (``SystemExit``).

    :param settings: the worker's settings (default: from the environment).
    :param on_ready: called with the worker's URL once it is ready.
    :param ready_out: where the readiness line goes (default: stdout).
    """
    if settings is not None:
        install_settings(settings)
    settings = get_settings()
    event_loop = use_event_loop(settings.event_loop)

    from eventpro.app import app, worker_datadir
    from eventpro.tables.stores import remove_retired_stores

    worker_datadir(settings).mkdir(parents=True, exist_ok=True)
    app.finalize()
    discard_untrusted_tables(settings, Path(app.conf.tabledir))
    remove_retired_stores(Path(app.conf.tabledir))
    app.discover()
    tune_garbage_collector(settings.gc_young_threshold)
    enable_thread_dumps()
    exit_with_parent()
    worker = _EventProWorker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        ready_out=ready_out or sys.stdout,
        on_ready=on_ready,
    )
    worker.spinner = None
    logger.info("starting worker %s on %s (%s)", settings.app_id, settings.broker_url, event_loop)
    worker.execute_from_commandline()
