"""Durable transaction-coordinator state: ``<data_dir>/transactions.log``, one JSON line per
state change of a transactional id (the whole entry, so the last line of an id wins).

A line is written to the OS before the coordinator answers, so a broker killed with SIGKILL
recovers every acknowledged transition; on open the file is rewritten as a snapshot (temporary
file, fsync, rename). A torn last line from a crash mid-write is dropped: the request it belonged
to was never answered, and the client retries it.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ("TopicPartition", "TxnEntry", "TxnState", "TxnStore")

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "transactions.log"
_COMPACT_AFTER_LINES = 10_000

TopicPartition = tuple[str, int]


class TxnState(enum.StrEnum):
    """Kafka's transaction states (PrepareEpochFence and Dead are not needed on one node)."""

    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"

    @property
    def open(self) -> bool:
        """Whether the transaction still holds partitions or staged offsets."""
        return self in (TxnState.ONGOING, TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)


@dataclass
class TxnEntry:
    """The coordinator's view of one transactional id."""

    transactional_id: str
    producer_id: int
    epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[TopicPartition] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    offsets: dict[str, dict[TopicPartition, tuple[int, str | None]]] = field(default_factory=dict)
    started_ms: int = -1
    # Epoch stamped on the markers of a prepared transaction (a timeout abort bumps it first).
    marker_epoch: int = -1

    def clear(self, state: TxnState) -> None:
        self.state = state
        self.partitions = set()
        self.groups = set()
        self.offsets = {}
        self.started_ms = -1
        self.marker_epoch = -1

    def to_json(self) -> dict[str, Any]:
        return {
            "tid": self.transactional_id,
            "pid": self.producer_id,
            "epoch": self.epoch,
            "timeout_ms": self.timeout_ms,
            "state": self.state.value,
            "partitions": sorted([t, p] for t, p in self.partitions),
            "groups": sorted(self.groups),
            "offsets": {
                group: [[t, p, o, m] for (t, p), (o, m) in sorted(offsets.items())]
                for group, offsets in self.offsets.items()
            },
            "started_ms": self.started_ms,
            "marker_epoch": self.marker_epoch,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TxnEntry:
        return cls(
            transactional_id=str(raw["tid"]),
            producer_id=int(raw["pid"]),
            epoch=int(raw["epoch"]),
            timeout_ms=int(raw["timeout_ms"]),
            state=TxnState(raw["state"]),
            partitions={(str(t), int(p)) for t, p in raw.get("partitions", ())},
            groups={str(g) for g in raw.get("groups", ())},
            offsets={
                str(group): {
                    (str(t), int(p)): (int(o), None if m is None else str(m))
                    for t, p, o, m in entries
                }
                for group, entries in raw.get("offsets", {}).items()
            },
            started_ms=int(raw.get("started_ms", -1)),
            marker_epoch=int(raw.get("marker_epoch", -1)),
        )


class TxnStore:
    """Append-only persistence of :class:`TxnEntry` values, compacted on open."""

    def __init__(self, data_dir: Path, *, fsync: bool = False) -> None:
        self.path = Path(data_dir) / LOG_FILE_NAME
        self._fsync = fsync
        self._fd: int | None = None
        self._lines = 0

    def open(self) -> list[TxnEntry]:
        """Read every entry (last line per id wins) and compact the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries: dict[str, TxnEntry] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            lines = data.split(b"\n")
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    entry = TxnEntry.from_json(orjson.loads(line))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    last = number == len(lines) and not data.endswith(b"\n")
                    logger.warning(
                        "%s: skipping %s line %d (%s)",
                        self.path,
                        "a torn last" if last else "unreadable",
                        number,
                        exc,
                    )
                    continue
                entries[entry.transactional_id] = entry
        self.compact(entries.values())
        return list(entries.values())

    def save(self, entry: TxnEntry) -> None:
        """Persist one entry; raises ``OSError`` if it could not be written."""
        if self._fd is None:
            raise OSError(f"transaction log {self.path} is closed; the broker is stopping")
        line = orjson.dumps(entry.to_json()) + b"\n"
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
        if self._fsync:
            os.fsync(self._fd)
        self._lines += 1

    def maybe_compact(self, entries: Iterable[TxnEntry], count: int) -> None:
        if self._lines > _COMPACT_AFTER_LINES + count:
            self.compact(entries)

    def compact(self, entries: Iterable[TxnEntry]) -> None:
        """Rewrite the file with one line per transactional id and reopen it for appends."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        lines = [orjson.dumps(e.to_json()) + b"\n" for e in entries]
        with open(tmp, "wb") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        self.close()
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lines = len(lines)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
