"""``eventpro dev``: the embedded broker and N workers on this machine, until Ctrl-C.

Each part runs in its own process (the broker beside the workers uses the second core), with its
log in ``<data-dir>/logs/``. Worker *i* serves HTTP on ``web_port + i`` and keeps its tables in
``<data-dir>/worker-<i>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from eventpro.broker.process import BrokerProcess
from eventpro.processes import ManagedProcess, ProcessStartError, WorkerProcess, exit_with_parent

__all__ = ("DEMO_EVENT_ID", "run_dev")

logger = logging.getLogger(__name__)

DEMO_EVENT_ID = "demo"


async def _create_demo_event(bootstrap: str) -> None:
    from eventpro.client import TicketClient
    from eventpro.settings import get_settings

    settings = get_settings()
    async with TicketClient(
        bootstrap, topic_prefix=settings.topic_prefix, source="eventpro-dev"
    ) as client:
        await client.create_event(
            "Demo concert",
            1000,
            5000,
            max_per_user=settings.default_max_per_user,
            event_id=DEMO_EVENT_ID,
        )


def run_dev(
    *, data_dir: Path, web_port: int, broker_port: int, workers: int, demo_event: bool
) -> None:
    """Start broker and workers, print the URLs, wait for Ctrl-C (or SIGTERM, SIGHUP), stop
    all. The children stop by themselves if this process is killed outright
    (:func:`~eventpro.processes.exit_with_parent`)."""
    data_dir = Path(data_dir)
    logs = data_dir / "logs"
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGHUP: the terminal closed; stop the children rather than leave them running.
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in stopping}
    exit_with_parent()
    broker = BrokerProcess(data_dir / "broker", port=broker_port, log_path=logs / "broker.log")
    children: list[ManagedProcess] = []
    try:
        print(f"starting the embedded broker on 127.0.0.1:{broker_port} ...", flush=True)
        bootstrap = broker.start()
        for index in range(workers):
            children.append(
                WorkerProcess(
                    broker=bootstrap,
                    web_port=web_port + index,
                    data_dir=data_dir / f"worker-{index}",
                    log_path=logs / f"worker-{index}.log",
                )
            )
        print(f"starting {workers} worker(s) ...", flush=True)
        for child in children:
            child.start(timeout=120)
        if demo_event:
            asyncio.run(_create_demo_event(bootstrap))
        _print_urls(bootstrap, children, logs, demo_event)
        while not stop.wait(1.0):
            for child in children:
                if not child.is_running():
                    print(f"{child.name} stopped unexpectedly; see {child.log_path}", flush=True)
                    stop.set()
    except ProcessStartError as exc:
        print(f"could not start: {exc}", flush=True)
        raise SystemExit(1) from exc
    finally:
        print("stopping ...", flush=True)
        for child in reversed(children):
            child.stop()
        broker.stop()
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        print("stopped", flush=True)


def _print_urls(
    bootstrap: str, workers: list[ManagedProcess], logs: Path, demo_event: bool
) -> None:
    first = workers[0]
    url = first.url if isinstance(first, WorkerProcess) else ""
    lines = [
        "",
        "EventPro is running:",
        f"  broker     kafka://{bootstrap}",
        *(f"  worker {i}   {w.url}" for i, w in enumerate(workers) if isinstance(w, WorkerProcess)),
        f"  API        {url}/api/v1/events/{DEMO_EVENT_ID if demo_event else '<event_id>'}",
        f"  dashboard  {url}/dashboard",
        f"  metrics    {url}/metrics",
        f"  health     {url}/health   ready: {url}/ready",
        f"  logs       {logs}/",
        "",
        "Try:",
        f"  curl -s -XPOST {url}/api/v1/ticket-requests -H 'content-type: application/json' \\",
        f'       -d \'{{"event_id": "{DEMO_EVENT_ID}", "user_id": "alice", "quantity": 2}}\'',
        "",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)
