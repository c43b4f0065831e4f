"""Run the broker as a foreground process: readiness line, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from eventpro.broker.groups import GroupConfig
from eventpro.broker.log import LogConfig
from eventpro.broker.server import Broker, BrokerConfig
from eventpro.processes import enable_thread_dumps, exit_with_parent

__all__ = ("READY_PREFIX", "serve")

logger = logging.getLogger(__name__)

READY_PREFIX = "EventPro broker ready on "


async def _serve(config: BrokerConfig) -> None:
    broker = Broker(config)
    try:
        await broker.start()
    except OSError as exc:
        print(
            f"EventPro broker could not start on {config.host}:{config.port}: {exc}",
            file=sys.stderr,
        )
        raise SystemExit(1) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"{READY_PREFIX}{broker.bootstrap} (data dir {broker.data_dir})", flush=True)
    try:
        await stop.wait()
    finally:
        # Logged, not printed: stdout may be a pipe nobody reads any more (a parent gone).
        await broker.stop()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it is on Linux), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: nocover
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def serve(
    *,
    host: str,
    port: int,
    data_dir: Path,
    initial_rebalance_delay_ms: int = 3000,
    fsync: bool = False,
    default_partitions: int = 1,
) -> None:
    """Run a broker until SIGINT/SIGTERM; prints one readiness line with the bootstrap address."""
    config = BrokerConfig(
        host=host,
        port=port,
        data_dir=data_dir,
        group=GroupConfig(initial_rebalance_delay_ms=initial_rebalance_delay_ms),
        log=LogConfig(flush="fsync" if fsync else "os"),
        default_partitions=default_partitions,
    )
    enable_thread_dumps()
    exit_with_parent()
    _run(_serve(config))
