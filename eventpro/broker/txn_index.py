"""Per-partition transaction state: open transactions (for the last stable offset) and the
aborted-transaction index that read_committed fetches return.

Open transactions are derived from batch headers: a producer's first transactional batch opens
its transaction, its next control batch (commit or abort marker) closes it. Aborted transactions
are appended to ``aborted.txnindex`` (fixed 24-byte entries: producer id, first offset, marker
offset) when their abort marker is written, so a restart does not have to re-read the log to
answer fetches. The open set is snapshotted in the log's ``state.json`` at its recovery point and
the tail after it is replayed, exactly like idempotent-producer state.
"""

from __future__ import annotations

import logging
import os
import struct
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

__all__ = ("INDEX_FILE", "AbortedTxn", "PartitionTxns")

logger = logging.getLogger(__name__)

INDEX_FILE = "aborted.txnindex"
_ENTRY = struct.Struct(">qqq")


class AbortedTxn(NamedTuple):
    """One aborted transaction in a partition: its records are in [first_offset, last_offset)."""

    producer_id: int
    first_offset: int
    last_offset: int  # offset of the abort marker


class PartitionTxns:
    """Open and aborted transactions of one partition log."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / INDEX_FILE
        self.ongoing: dict[int, int] = {}  # producer id -> first offset of its open transaction
        self._aborted: list[AbortedTxn] = []
        self._last_offsets: list[int] = []
        self._fd: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def load(self, ongoing: Mapping[int, int], recovery_point: int) -> None:
        """Restore the snapshot taken at ``recovery_point``; entries at or after it are dropped
        because the log replays that tail through :meth:`on_batch` again."""
        self.ongoing = dict(ongoing)
        entries: list[AbortedTxn] = []
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        usable = len(raw) - len(raw) % _ENTRY.size
        if usable != len(raw):
            logger.warning("%s: dropping a torn last entry left by an interrupted write", self.path)
        for pid, first, last in _ENTRY.iter_unpack(raw[:usable]):
            if last < recovery_point:
                entries.append(AbortedTxn(pid, first, last))
        self._set(entries)
        if len(entries) * _ENTRY.size != len(raw):
            self._rewrite()
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def reset(self) -> None:
        """Forget everything (the log is about to be replayed from its start)."""
        self.ongoing = {}
        self._set([])
        self._rewrite()

    # ------------------------------------------------------------------ updates

    def on_batch(
        self, producer_id: int, base_offset: int, transactional: bool, control: int | None
    ) -> None:
        """Track one appended (or replayed) batch; ``control`` = marker type for control batches.

        :param control: ``None`` for data batches, 0 (abort) or 1 (commit) for markers.
        """
        if not transactional or producer_id < 0:
            return
        if control is None:
            self.ongoing.setdefault(producer_id, base_offset)
            return
        first = self.ongoing.pop(producer_id, None)
        if first is not None and control == 0:
            entry = AbortedTxn(producer_id, first, base_offset)
            self._aborted.append(entry)
            self._last_offsets.append(entry.last_offset)
            self._write(_ENTRY.pack(*entry))

    def drop_before(self, log_start_offset: int) -> None:
        """Forget aborted transactions that ended before the log start (retention)."""
        kept = [e for e in self._aborted if e.last_offset >= log_start_offset]
        if len(kept) != len(self._aborted):
            self._set(kept)
            self._rewrite()

    # ------------------------------------------------------------------ queries

    def last_stable_offset(self, end_offset: int) -> int:
        """First offset of the earliest open transaction, or ``end_offset`` if none is open."""
        return min(self.ongoing.values(), default=end_offset)

    def aborted_in(self, start: int, upper: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of aborted transactions overlapping [start, upper)."""
        i = bisect_left(self._last_offsets, start)
        return [
            (e.producer_id, e.first_offset) for e in self._aborted[i:] if e.first_offset < upper
        ]

    @property
    def aborted(self) -> tuple[AbortedTxn, ...]:
        return tuple(self._aborted)

    # ------------------------------------------------------------------ internals

    def _set(self, entries: Iterable[AbortedTxn]) -> None:
        self._aborted = sorted(entries, key=lambda e: e.last_offset)
        self._last_offsets = [e.last_offset for e in self._aborted]

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def _write(self, data: bytes) -> None:
        written = os.write(self._open(), data)
        if written != len(data):
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")

    def _rewrite(self) -> None:
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(b"".join(_ENTRY.pack(*e) for e in self._aborted))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._open()
