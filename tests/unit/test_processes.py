"""A child that ignores SIGTERM leaves its thread stacks in its log before it is killed."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

from eventpro.processes import THREAD_DUMP_SIGNAL, ManagedProcess

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
