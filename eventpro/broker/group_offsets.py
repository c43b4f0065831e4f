"""Durable committed offsets of consumer groups: an append-only JSON-lines file plus compaction.

Each acknowledged commit is one line written to the OS (``os.write`` on an ``O_APPEND`` descriptor)
before the coordinator answers, so a killed broker process loses nothing it acknowledged. On open
(and on close, and when the file grows) the file is rewritten as a snapshot with one line per group
through a temporary file, ``fsync`` and ``os.replace``, so a crash during compaction leaves either
the old or the new file. A torn last line from a crash mid-write is dropped with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

__all__ = ("OffsetStore", "PartitionOffsets", "TopicPartition")

logger = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
PartitionOffsets = dict[TopicPartition, tuple[int, str | None]]

LOG_FILE_NAME = "__consumer_offsets.log"
_DEFAULT_COMPACT_AFTER_LINES = 10_000


class OffsetStore:
    """Committed offsets per group, persisted in ``<data_dir>/__consumer_offsets.log``.

    :param data_dir: directory of the log file; created on :meth:`open`.
    :param fsync: ``fsync`` after every commit, not only write it to the OS. Default - ``False``.
    :param compact_after_lines: rewrite the file as a snapshot after this many appended lines.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = False,
        compact_after_lines: int = _DEFAULT_COMPACT_AFTER_LINES,
    ) -> None:
        self.path = Path(data_dir) / LOG_FILE_NAME
        self._fsync = fsync
        self._compact_after_lines = compact_after_lines
        self._offsets: dict[str, PartitionOffsets] = {}
        self._fd: int | None = None
        self._lines = 0

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Load every committed offset, then compact the file into a snapshot."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._offsets = {}
        if self.path.exists():
            self._replay(self.path.read_bytes())
        self.compact()
        logger.info("loaded committed offsets of %d groups from %s", len(self._offsets), self.path)

    def close(self) -> None:
        """Compact and close the file; later commits fail until :meth:`open`."""
        if self._fd is None:
            return
        try:
            self.compact()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- queries ---------------------------------------------------------------------------

    def groups(self) -> list[str]:
        """Groups with at least one committed offset."""
        return [group_id for group_id, offsets in self._offsets.items() if offsets]

    def offsets(self, group_id: str) -> Mapping[TopicPartition, tuple[int, str | None]]:
        """Committed (offset, metadata) per partition of ``group_id`` (read-only view)."""
        return self._offsets.get(group_id, {})

    # -- updates ---------------------------------------------------------------------------

    def commit(
        self, group_id: str, offsets: Mapping[TopicPartition, tuple[int, str | None]]
    ) -> None:
        """Persist, then apply, one commit; raises ``OSError`` if it could not be written."""
        if not offsets:
            return
        record = {
            "group": group_id,
            "offsets": [
                [topic, partition, off, meta] for (topic, partition), (off, meta) in offsets.items()
            ],
        }
        self._append(orjson.dumps(record) + b"\n")
        self._offsets.setdefault(group_id, {}).update(offsets)
        self._maybe_compact()

    def delete_topic(self, topic: str) -> list[str]:
        """Forget every group's offsets for ``topic``; returns the groups that had some."""
        affected = [
            group_id
            for group_id, offsets in self._offsets.items()
            if any(tp[0] == topic for tp in offsets)
        ]
        if not affected:
            return []
        self._append(orjson.dumps({"delete_topic": topic}) + b"\n")
        self._apply_delete_topic(topic)
        self._maybe_compact()
        return affected

    def compact(self) -> None:
        """Rewrite the file as one line per group (atomic replace) and reopen it for appends."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        lines = [
            orjson.dumps(
                {
                    "group": group_id,
                    "offsets": [[t, p, o, m] for (t, p), (o, m) in sorted(offsets.items())],
                }
            )
            + b"\n"
            for group_id, offsets in sorted(self._offsets.items())
            if offsets
        ]
        with open(tmp, "wb") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lines = len(lines)

    # -- internals -------------------------------------------------------------------------

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            raise OSError(f"offset log {self.path} is closed; the coordinator is not running")
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
        if self._fsync:
            os.fsync(self._fd)
        self._lines += 1

    def _maybe_compact(self) -> None:
        if self._lines > self._compact_after_lines + len(self._offsets):
            self.compact()

    def _replay(self, data: bytes) -> None:
        lines = data.split(b"\n")
        torn_tail = not data.endswith(b"\n") and data != b""
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                self._apply(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                if torn_tail and number == len(lines):
                    logger.warning(
                        "%s: dropping a torn last line (%d bytes) left by an interrupted write; "
                        "the commit it held was never acknowledged",
                        self.path,
                        len(line),
                    )
                else:
                    logger.warning(
                        "%s: skipping unreadable line %d (%s); offsets it held are lost, "
                        "consumers of that group resume from auto.offset.reset",
                        self.path,
                        number,
                        exc,
                    )

    def _apply(self, record: dict[str, Any]) -> None:
        if "delete_topic" in record:
            self._apply_delete_topic(str(record["delete_topic"]))
            return
        entries: Iterable[list[Any]] = record["offsets"]
        parsed: PartitionOffsets = {}
        for topic, partition, offset, metadata in entries:
            parsed[(str(topic), int(partition))] = (
                int(offset),
                None if metadata is None else str(metadata),
            )
        self._offsets.setdefault(str(record["group"]), {}).update(parsed)

    def _apply_delete_topic(self, topic: str) -> None:
        for offsets in self._offsets.values():
            for tp in [tp for tp in offsets if tp[0] == topic]:
                del offsets[tp]


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (directories cannot be fsynced on every platform)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
