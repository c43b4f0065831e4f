"""Process state read from /proc, for tests that wait for another process to exit."""

from __future__ import annotations

from pathlib import Path

__all__ = ("process_gone",)


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited: no longer in /proc, or a zombie (``Z``) or dead (``X``)
    process its new parent has not reaped yet (an orphan's is init, which may never do it
    in a container)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return state.split()[1] in ("Z", "X")
