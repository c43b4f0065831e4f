"""Run the embedded broker as a child process (``eventpro dev``, tests, benchmarks).

A separate process keeps the broker's CPU off the worker's event loop and lets tests kill it with
SIGKILL and start it again on the same port and data directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from eventpro.broker.runner import READY_PREFIX

__all__ = ("BrokerProcess", "BrokerStartError")

logger = logging.getLogger(__name__)


class BrokerStartError(RuntimeError):
    """The broker process exited or stayed silent instead of printing its readiness line."""


class BrokerProcess:
    """A broker child process on one data directory; restarts reuse the first port it got."""

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
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}.log"
        self.extra_args = extra_args
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Start the process and wait for its readiness line; returns the bootstrap address."""
        if self.is_running():
            return self.bootstrap
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
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
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        line = self._read_ready_line(timeout)
        address = line.split(READY_PREFIX, 1)[1].split()[0]
        self.port = int(address.rsplit(":", 1)[1])
        logger.info("broker process %d ready on %s", self._proc.pid, self.bootstrap)
        return self.bootstrap

    def _read_ready_line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        fd = self._proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buffer += chunk
                for raw in buffer.split(b"\n"):
                    text = raw.decode(errors="replace")
                    if READY_PREFIX in text:
                        return text
            elif self._proc.poll() is not None:
                break
        code = self._proc.poll()
        self.kill()
        raise BrokerStartError(
            f"broker did not become ready within {timeout:.0f}s (exit code {code}); "
            f"see its log at {self.log_path}"
        )

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait for a clean shutdown; SIGKILL if it does not stop in time."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "broker %d ignored SIGTERM for %.0fs; killing", self._proc.pid, timeout
                )
                self._proc.kill()
                self._proc.wait()
        return self._close()

    def kill(self) -> int | None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        return self._close()

    def _close(self) -> int | None:
        assert self._proc is not None
        code = self._proc.returncode
        if self._proc.stdout is not None:
            with contextlib.suppress(OSError):
                self._proc.stdout.close()
        self._proc = None
        return code

    def restart(self, timeout: float = 30.0, *, kill: bool = False) -> str:
        """Stop (or kill) and start again on the same port and data directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
