"""A child that ignores SIGTERM leaves its thread stacks in its log before it is killed; a child
whose parent was killed stops by itself."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.procfs import process_gone

from eventpro.processes import (
    PARENT_PID_ENV,
    THREAD_DUMP_SIGNAL,
    ManagedProcess,
    exit_with_parent,
)

HUNG_CHILD = textwrap.dedent(
    """
    import signal, time
    from eventpro.processes import enable_thread_dumps

    def stuck_in_a_blocking_call():
        print("child ready", flush=True)
        while True:
            time.sleep(0.05)

    enable_thread_dumps()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stuck_in_a_blocking_call()
    """
)


def _hung_child(tmp_path: Path, dump_signals: tuple[signal.Signals, ...]) -> ManagedProcess:
    child = ManagedProcess(
        [sys.executable, "-c", HUNG_CHILD],
        ready_prefix="child ready",
        log_path=tmp_path / "child.log",
    )
    child.dump_signals = dump_signals
    child.start(timeout=30)
    return child


def test_a_child_that_ignores_sigterm_dumps_its_stacks_then_is_killed(tmp_path: Path) -> None:
    child = _hung_child(tmp_path, (THREAD_DUMP_SIGNAL,))
    code = child.stop(timeout=0.5)
    log = child.log_path.read_text()
    assert code == -signal.SIGKILL
    assert "most recent call first" in log, log
    assert "in stuck_in_a_blocking_call" in log, log


def test_without_dump_signals_the_child_is_killed_without_a_dump(tmp_path: Path) -> None:
    child = _hung_child(tmp_path, ())
    assert child.stop(timeout=0.5) == -signal.SIGKILL
    assert "stuck_in_a_blocking_call" not in child.log_path.read_text()


ORPHANED_CHILD = textwrap.dedent(
    """
    import time
    from eventpro.processes import exit_with_parent

    exit_with_parent(check_every=0.05)
    print("child ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)

PARENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from eventpro.processes import ManagedProcess

    child = ManagedProcess(
        [sys.executable, "-c", sys.argv[1]], ready_prefix="child ready", log_path=Path(sys.argv[2])
    )
    child.start(timeout=30)
    print(f"parent ready {child.pid}", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def test_a_child_stops_once_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    parent = ManagedProcess(
        [sys.executable, "-c", PARENT, ORPHANED_CHILD, str(tmp_path / "child.log")],
        ready_prefix="parent ready",
        log_path=tmp_path / "parent.log",
    )
    child_pid = int(parent.start(timeout=30))
    try:
        assert not process_gone(child_pid)
        parent.kill()  # SIGKILL: the parent cannot stop its child itself
        deadline = time.monotonic() + 10
        while not process_gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_gone(child_pid), "the orphaned child is still running"
        assert "is gone: stopping" in (tmp_path / "child.log").read_text()
    finally:
        if not process_gone(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_without_a_named_parent_nothing_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_PID_ENV, raising=False)
    assert exit_with_parent() is None
    monkeypatch.setenv(PARENT_PID_ENV, "not-a-pid")
    assert exit_with_parent() is None


def test_wait_exit_tells_a_child_that_finished_from_one_still_running(tmp_path: Path) -> None:
    running = _hung_child(tmp_path, ())
    try:
        assert running.wait_exit(0.2) is False
        assert running.is_running()
    finally:
        running.kill()
    finishing = ManagedProcess(
        [sys.executable, "-c", "print('child ready', flush=True)"],
        ready_prefix="child ready",
        log_path=tmp_path / "finishing.log",
    )
    finishing.start(timeout=30)
    assert finishing.wait_exit(30) is True
    assert not finishing.is_running()
    assert finishing.stop() == 0
