"""Child processes that announce readiness with one stdout line: the broker and Faust workers.

``eventpro dev``, the tests and the benchmarks start brokers and workers as separate processes,
so each gets its own core and a test can kill one with SIGKILL and start it again on the same
port and data directory.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = (
    "THREAD_DUMP_SIGNAL",
    "ManagedProcess",
    "ProcessStartError",
    "WorkerProcess",
    "enable_thread_dumps",
    "exit_with_parent",
)

logger = logging.getLogger(__name__)

THREAD_DUMP_SIGNAL = signal.SIGQUIT
"""``kill -QUIT <pid>`` makes a broker or worker write every thread's stack to its log."""

DUMP_WAIT_SECONDS = 3.0
"""How long :meth:`ManagedProcess.stop` lets a hung child write its stacks before SIGKILL."""


def enable_thread_dumps() -> None:
    """Make :data:`THREAD_DUMP_SIGNAL` write every thread's Python stack to stderr (the log).

    Called by the broker and the worker at start. The dump is written from the C signal
    handler, so it works when the event loop is blocked and no Python signal handler could
    run (the case it is for: a process that ignores SIGTERM); the process goes on running.
    """
    faulthandler.register(THREAD_DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=False)


PARENT_PID_ENV = "EVENTPRO_PARENT_PID"
"""Set by :class:`ManagedProcess` in its child's environment: the process the child lives for."""

ORPHAN_CHECK_SECONDS = 1.0
"""How often :func:`exit_with_parent` looks whether the parent is still there."""
ORPHAN_STOP_SECONDS = 20.0
"""How long an orphan's clean shutdown may take before it exits without one."""


def exit_with_parent(
    check_every: float = ORPHAN_CHECK_SECONDS, stop_within: float = ORPHAN_STOP_SECONDS
) -> threading.Thread | None:
    """Stop this process (SIGTERM to itself) once the process that started it is gone.

    A benchmark, ``eventpro dev`` or test run that is killed outright (SIGKILL, a closed
    terminal) cannot stop its broker and workers; without this they go on holding their ports,
    files and CPU, and the next run fails or measures less. Called by the broker, the worker
    and ``eventpro dev`` at start; does nothing unless :data:`PARENT_PID_ENV` names the parent
    (:class:`ManagedProcess` sets it). A daemon thread compares ``getppid`` with it: an
    orphan is re-parented to init or a subreaper.

    A shutdown that has not finished ``stop_within`` seconds after the SIGTERM (seen: a Faust
    worker whose broker went away with the same parent waits forever for its crashed
    consumer thread) writes every thread's stack to stderr and exits at once, as a crash would.
    """
    named = os.environ.get(PARENT_PID_ENV, "")
    if not named:
        return None
    try:
        parent = int(named)
    except ValueError:
        logger.warning("%s=%r is not a process id; not watching the parent", PARENT_PID_ENV, named)
        return None
    pause = threading.Event()  # never set: its timed waits are the pauses between looks

    def watch() -> None:
        while os.getppid() == parent:
            pause.wait(check_every)
        logger.warning("the process that started this one (%d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)
        pause.wait(stop_within)
        logger.error("no clean shutdown within %.0f s of SIGTERM: exiting without one", stop_within)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(1)

    thread = threading.Thread(target=watch, name="eventpro-exit-with-parent", daemon=True)
    thread.start()
    return thread


class ProcessStartError(RuntimeError):
    """The child exited or stayed silent instead of printing its readiness line."""


class ManagedProcess:
    """One child process started with ``args``; ready once it prints a line with ``ready_prefix``.

    Standard error (its log) goes to ``log_path``; the readiness line's remainder is kept in
    :attr:`ready_detail`.
    """

    name = "process"
    dump_signals: tuple[signal.Signals, ...] = ()
    """Signals that make the child write its stacks to its log before :meth:`stop` kills it
    (none by default: SIGQUIT kills a process that did not call :func:`enable_thread_dumps`)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        ready_prefix: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = list(args)
        self.ready_prefix = ready_prefix
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.ready_detail = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The command line of the next start (subclasses may vary it between restarts)."""
        return self.args

    def start(self, timeout: float = 60.0) -> str:
        """Start the child and wait for its readiness line; returns the text after the prefix."""
        if self.is_running():
            return self.ready_detail
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**(os.environ if self.env is None else self.env), PARENT_PID_ENV: str(os.getpid())}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
            )
        finally:
            log.close()
        line = self._read_ready_line(timeout)
        self.ready_detail = line.split(self.ready_prefix, 1)[1].strip()
        logger.info("%s %d ready: %s", self.name, self._proc.pid, self.ready_detail)
        return self.ready_detail

    def _read_ready_line(self, timeout: float) -> str:
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise ProcessStartError(f"{self.name} was not started")
        deadline = time.monotonic() + timeout
        buffer = b""
        fd = proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buffer += chunk
                for raw in buffer.split(b"\n"):
                    text = raw.decode(errors="replace")
                    if self.ready_prefix in text:
                        return text
            elif proc.poll() is not None:
                break
        code = proc.poll()
        self.kill()
        raise ProcessStartError(
            f"{self.name} did not become ready within {timeout:.0f}s (exit code {code}); "
            f"see its log at {self.log_path}"
        )

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the child to exit by itself; whether it did."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for a clean shutdown; SIGKILL if it does not stop in time."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s %d ignored SIGTERM; its stacks go to %s, then it is killed",
                    self.name,
                    self._proc.pid,
                    self.log_path,
                )
                self._dump_stacks()
                self._proc.kill()
                self._proc.wait()
        return self._close()

    def _dump_stacks(self) -> None:
        """Ask a hung child for its thread stacks and wait until its log stops growing.

        :data:`THREAD_DUMP_SIGNAL` dumps the threads even when the event loop is blocked;
        SIGUSR1 makes a Faust worker whose loop still runs log its asyncio tasks too (mode's
        handler). Bounded by :data:`DUMP_WAIT_SECONDS`.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        for sig in self.dump_signals:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        deadline = time.monotonic() + DUMP_WAIT_SECONDS
        size = -1
        while time.monotonic() < deadline and proc.poll() is None:
            current = self.log_path.stat().st_size if self.log_path.exists() else 0
            if current == size:
                return
            size = current
            time.sleep(0.5)  # the log is quiet for this long once the dump is written

    def kill(self) -> int | None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        return self._close()

    def _close(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        self._proc = None
        return proc.returncode

    def restart(self, timeout: float = 60.0, *, kill: bool = False) -> str:
        """Stop (or kill) and start again with the same command line."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class WorkerProcess(ManagedProcess):
    """``eventpro worker`` as a child process, configured by ``EVENTPRO_*`` variables."""

    name = "worker"
    dump_signals = (THREAD_DUMP_SIGNAL, signal.SIGUSR1)

    def __init__(
        self,
        *,
        broker: str,
        web_port: int,
        data_dir: Path,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from eventpro.worker import READY_PREFIX

        self.web_port = web_port
        self.data_dir = Path(data_dir)
        child_env = {
            **os.environ,
            **(env or {}),
            "EVENTPRO_BROKER_URL": f"kafka://{broker}" if "://" not in broker else broker,
            "EVENTPRO_WEB_PORT": str(web_port),
            "EVENTPRO_DATA_DIR": str(self.data_dir),
        }
        super().__init__(
            [sys.executable, "-m", "eventpro", "worker"],
            ready_prefix=READY_PREFIX,
            log_path=log_path or self.data_dir.parent / f"{self.data_dir.name}.log",
            env=child_env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"
