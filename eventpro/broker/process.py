"""Run the embedded broker as a child process (``eventpro dev``, tests, benchmarks).

A separate process keeps the broker's CPU off the worker's event loop and lets tests kill it with
SIGKILL and start it again on the same port and data directory.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from eventpro.broker.runner import READY_PREFIX
from eventpro.processes import THREAD_DUMP_SIGNAL, ManagedProcess, ProcessStartError

__all__ = ("BrokerProcess", "BrokerStartError")

logger = logging.getLogger(__name__)

BrokerStartError = ProcessStartError


class BrokerProcess(ManagedProcess):
    """A broker child process on one data directory; restarts reuse the first port it got."""

    name = "broker"
    dump_signals = (THREAD_DUMP_SIGNAL,)

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
        log_level: str = "INFO",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.extra_args = extra_args
        self.log_level = log_level
        super().__init__(
            [],
            ready_prefix=READY_PREFIX,
            log_path=log_path or self.data_dir.parent / f"{self.data_dir.name}.log",
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "eventpro",
            "broker",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> str:
        """Start and wait for the readiness line; returns the bootstrap address."""
        if self.is_running():
            return self.bootstrap
        self.data_dir.mkdir(parents=True, exist_ok=True)
        detail = super().start(timeout)
        self.port = int(detail.split()[0].rsplit(":", 1)[1])
        return self.bootstrap

    def restart(self, timeout: float = 30.0, *, kill: bool = False) -> str:
        """Stop (or kill) and start again on the same port and data directory."""
        super().restart(timeout, kill=kill)
        return self.bootstrap

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self
