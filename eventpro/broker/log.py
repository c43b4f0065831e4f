"""A partition's durable log: segments of Kafka v2 record batches, recovery, retention, compaction.

The hot path (``append``/``read``) does constant work per batch: header parsing with one
``struct`` call, a C CRC32C check, one ``os.write`` per request and ``os.pread`` for reads, located
with a sparse in-memory offset index. No per-record Python work happens outside compaction.

Crash safety: ``state.json`` records a *recovery point* (an offset below which every segment has
been verified and indexed) with a snapshot of idempotent-producer state at that point, and whether
the last shutdown was clean. On open, every segment holding offsets at or after the recovery point
is re-scanned with CRC checks, a torn tail is truncated, and producer state is rebuilt from batch
headers. Segments are rolled at ``segment_bytes``, which moves the recovery point forward, so an
unclean restart re-scans little more than the active segment.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from eventpro.broker.errors import (
    InvalidConfigError,
    InvalidProducerEpochError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    StorageError,
)
from eventpro.broker.records import (
    ATTR_CONTROL,
    ATTR_TRANSACTIONAL,
    H_ATTR,
    H_BASE,
    H_BASE_SEQ,
    H_LOD,
    H_PEPOCH,
    H_PID,
    HEADER_SIZE,
    BatchInfo,
    RawRecord,
    batch_info,
    compact_batch,
    control_type,
    parse_records,
    validate_batches,
)
from eventpro.broker.segment import Segment
from eventpro.broker.txn_index import PartitionTxns

__all__ = ("AppendResult", "LogConfig", "PartitionLog")

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
_DAY_MS = 24 * 3600 * 1000
_STATE_FILE = "state.json"
_MAX_SEQ = 2**31 - 1
_MAX_RELATIVE_OFFSET = 2**31 - 1
_PRODUCER_BATCHES = 5
_BASE_OFFSET = struct.Struct(">q")
_BATCH_PREFIX = struct.Struct(">qi")
_CONTROL_PEEK = HEADER_SIZE + 64
_CLEANUP_POLICIES = frozenset({"delete", "compact"})


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class LogConfig:
    """Per-partition storage settings; Kafka topic config names map onto these fields."""

    segment_bytes: int = 64 * _MIB
    segment_ms: int = 7 * _DAY_MS
    retention_ms: int = 7 * _DAY_MS
    retention_bytes: int = -1
    cleanup_policy: frozenset[str] = frozenset({"delete"})
    flush: Literal["os", "fsync"] = "os"
    fsync_interval_ms: int = 1000
    index_interval_bytes: int = 4096
    max_message_bytes: int = 8 * _MIB
    min_compaction_lag_ms: int = 0
    # Compaction runs from maintenance once this share of the log was written since the last run.
    min_cleanable_dirty_ratio: float = 0.5

    @classmethod
    def from_topic_configs(
        cls, configs: Mapping[str, str | None] | None, defaults: LogConfig
    ) -> LogConfig:
        """Apply Kafka topic configs over ``defaults``; unknown keys are ignored.

        Raises :class:`InvalidConfigError` naming the key when a value is unusable.
        """
        changes: dict[str, Any] = {}
        for key, raw in (configs or {}).items():
            if raw is None:
                continue
            if key == "cleanup.policy":
                policies = frozenset(p.strip() for p in raw.split(",") if p.strip())
                if not policies or not policies <= _CLEANUP_POLICIES:
                    raise InvalidConfigError(
                        f"cleanup.policy={raw!r}: use 'delete', 'compact' or 'compact,delete'"
                    )
                changes["cleanup_policy"] = policies
                continue
            spec = _INT_CONFIGS.get(key)
            if spec is None:
                continue
            name, minimum = spec
            try:
                value = int(raw)
            except ValueError:
                raise InvalidConfigError(f"{key}={raw!r} is not an integer") from None
            if value < minimum:
                raise InvalidConfigError(f"{key}={value} is below the minimum {minimum}")
            changes[name] = value
        return replace(defaults, **changes)


_INT_CONFIGS: dict[str, tuple[str, int]] = {
    "retention.ms": ("retention_ms", -1),
    "retention.bytes": ("retention_bytes", -1),
    "segment.bytes": ("segment_bytes", 14),
    "segment.ms": ("segment_ms", 1),
    "max.message.bytes": ("max_message_bytes", 0),
    "min.compaction.lag.ms": ("min_compaction_lag_ms", 0),
    "index.interval.bytes": ("index_interval_bytes", 0),
    "flush.ms": ("fsync_interval_ms", 0),
}


@dataclass(frozen=True)
class AppendResult:
    """Offsets of an append; ``duplicate``: a retried batch was recognised and not written."""

    base_offset: int
    last_offset: int
    duplicate: bool = False


@dataclass
class _Producer:
    """Idempotence state of one producer id: its epoch and its last few batches."""

    epoch: int
    batches: deque[tuple[int, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=_PRODUCER_BATCHES)
    )  # (first_seq, last_seq, base_offset, last_offset)

    def apply(self, epoch: int, first_seq: int, last_seq: int, base: int, last: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches.clear()
        if first_seq >= 0:
            self.batches.append((first_seq, last_seq, base, last))


def _last_seq(first_seq: int, delta: int) -> int:
    """Kafka's sequence arithmetic: sequences wrap from 2**31-1 to 0."""
    return (
        first_seq + delta if first_seq <= _MAX_SEQ - delta else delta - (_MAX_SEQ - first_seq) - 1
    )


def _next_seq(seq: int) -> int:
    return 0 if seq == _MAX_SEQ else seq + 1


class PartitionLog:
    """The segments of one topic partition in one directory."""

    def __init__(self, directory: Path, config: LogConfig, segments: list[Segment]) -> None:
        self.directory = directory
        self.config = config
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._producers: dict[int, _Producer] = {}
        self._last_fsync_ms = _now_ms()
        self._unsynced = False
        self._active_since_ms: int | None = None
        self._appended_since_compaction = 0
        self._closed = False
        self._txns = PartitionTxns(directory)

    # ------------------------------------------------------------------ opening and recovery

    @classmethod
    def open(cls, directory: Path, config: LogConfig) -> PartitionLog:
        """Open (creating if needed) the log in ``directory``, recovering from an unclean stop."""
        directory.mkdir(parents=True, exist_ok=True)
        for stale in (*directory.glob("*.tmp"), *directory.glob("*.cleaned")):
            stale.unlink(missing_ok=True)
        state = _read_state(directory / _STATE_FILE)
        bases = sorted(
            int(p.stem) for p in directory.glob("*.log") if len(p.stem) == 20 and p.stem.isdigit()
        )
        if not bases:
            bases = [0]
        segments = [Segment(directory, b, config.index_interval_bytes) for b in bases]
        log = cls(directory, config, segments)
        log._recover(state)
        log._write_state(clean=False)
        return log

    def _recover(self, state: dict[str, Any] | None) -> None:
        clean = bool(state and state.get("clean"))
        recovery_point = int(state.get("recovery_point", 0)) if state else 0
        producers = state.get("producers", {}) if state else {}
        self._producers = {
            int(pid): _Producer(int(p["epoch"]), deque(map(tuple, p["batches"]), _PRODUCER_BATCHES))
            for pid, p in producers.items()
        }
        txns = state.get("txns", {}) if state else {}
        self._txns.load({int(pid): int(first) for pid, first in txns.items()}, recovery_point)

        segments = self._segments
        rebuilt: list[Segment] = []
        for i, seg in enumerate(segments):

            def replay(pos: int, header: tuple[int, ...], seg: Segment = seg) -> None:
                if header[H_BASE] >= recovery_point:
                    self._apply_producer(header)
                    self._track_txn(header, lambda: seg.pread(pos, _CONTROL_PEEK))

            next_base = segments[i + 1].base_offset if i + 1 < len(segments) else None
            holds_unverified = next_base is None or next_base > recovery_point
            if clean or not holds_unverified:
                if not seg.load_indexes():
                    logger.info("Rebuilding the indexes of %s", seg.log_path)
                    seg.recover(verify=False)
                    seg.write_indexes(fsync=False)
                continue
            outcome = seg.recover(verify=True, on_batch=replay)
            rebuilt.append(seg)
            if outcome is None:
                continue
            cut, reason = outcome
            dropped = segments[i + 1 :]
            logger.warning(
                "Truncated %d bytes from %s at offset %d because %s; %d later segment(s) "
                "dropped. Data after that point was never fully written (unclean shutdown).",
                cut,
                seg.log_path,
                seg.next_offset,
                reason,
                len(dropped),
            )
            for later in dropped:
                later.delete()
            del segments[i + 1 :]
            break
        for seg in rebuilt:
            if seg is not segments[-1]:
                seg.write_indexes(fsync=False)
        self._bases = [s.base_offset for s in segments]

    def _write_state(self, *, clean: bool) -> None:
        state = {
            "version": 1,
            "clean": clean,
            "recovery_point": self.end_offset,
            "producers": {
                str(pid): {"epoch": p.epoch, "batches": [list(b) for b in p.batches]}
                for pid, p in self._producers.items()
            },
            "txns": {str(pid): first for pid, first in self._txns.ongoing.items()},
        }
        path = self.directory / _STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(state, separators=(",", ":")).encode())
            if clean or self.config.flush == "fsync":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)

    # ------------------------------------------------------------------ properties

    @property
    def _active(self) -> Segment:
        return self._segments[-1]

    @property
    def log_start_offset(self) -> int:
        return self._segments[0].base_offset

    @property
    def end_offset(self) -> int:
        """The next offset to be assigned (the high watermark of a single-node broker)."""
        return self._active.next_offset

    @property
    def last_stable_offset(self) -> int:
        """Offsets below this are decided: the first offset of the earliest open transaction,
        or the end offset when none is open (what read_committed consumers may read up to)."""
        return self._txns.last_stable_offset(self.end_offset)

    @property
    def open_transactions(self) -> dict[int, int]:
        """Producer id -> first offset of each transaction still open in this partition."""
        return dict(self._txns.ongoing)

    def producer_epoch(self, producer_id: int) -> int:
        """The latest epoch this log has seen from ``producer_id`` (-1 if none)."""
        producer = self._producers.get(producer_id)
        return producer.epoch if producer is not None else -1

    def aborted_transactions(self, start: int, upper: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of aborted transactions overlapping [start, upper)."""
        return self._txns.aborted_in(start, upper)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    # ------------------------------------------------------------------ appending

    def append(self, records: bytes, *, now_ms: int | None = None) -> AppendResult:
        """Validate, assign offsets to and write the batches of one produce request."""
        if self._closed:
            raise StorageError(f"the log in {self.directory} is closed")
        now = _now_ms() if now_ms is None else now_ms
        if len(records) > self.config.max_message_bytes:
            raise MessageTooLargeError(
                f"{len(records)} bytes of records exceed max.message.bytes="
                f"{self.config.max_message_bytes} for {self.directory.name}"
            )
        batches = validate_batches(records)
        duplicate = self._check_producers(batches)
        if duplicate is not None:
            return duplicate

        offset = self._active.next_offset
        total = sum(h[H_LOD] + 1 for _, h in batches)
        active = self._active
        if active.size > 0 and (
            active.size + len(records) > self.config.segment_bytes
            or offset + total - active.base_offset > _MAX_RELATIVE_OFFSET
            or (
                self._active_since_ms is not None
                and now - self._active_since_ms >= self.config.segment_ms
            )
        ):
            self._roll()
            active = self._active
        if self._active_since_ms is None:
            self._active_since_ms = now

        data = bytearray(records)
        assigned: list[tuple[int, tuple[int, ...]]] = []
        first = offset
        for rel, header in batches:
            _BASE_OFFSET.pack_into(data, rel, offset)
            assigned.append((rel, (offset, *header[1:])))
            offset += header[H_LOD] + 1
        size_before = active.size
        try:
            active.append(data, assigned)
        except OSError as exc:
            active.truncate(size_before)
            raise StorageError(
                f"writing to {active.log_path} failed ({exc}); check free disk space"
            ) from exc
        for rel, header in assigned:
            if header[H_PID] >= 0:
                self._apply_producer(header)
                self._track_txn(header, lambda rel=rel: bytes(data[rel : rel + _CONTROL_PEEK]))
        self._appended_since_compaction += len(data)
        self._unsynced = True
        self.sync_if_due(now)
        return AppendResult(first, offset - 1, False)

    def _check_producers(self, batches: list[tuple[int, tuple[int, ...]]]) -> AppendResult | None:
        """Apply Kafka's idempotent-producer rules; returns the original offsets of a duplicate."""
        pending: dict[int, tuple[int, int | None]] = {}
        for _, h in batches:
            pid = h[H_PID]
            if pid < 0:
                continue
            epoch, first_seq = h[H_PEPOCH], h[H_BASE_SEQ]
            known = self._producers.get(pid)
            if pid in pending:
                cur_epoch, cur_last = pending[pid]
            elif known is not None:
                cur_epoch = known.epoch
                cur_last = known.batches[-1][1] if known.batches else None
            else:
                cur_epoch, cur_last = None, None
            if cur_epoch is not None and epoch < cur_epoch:
                raise InvalidProducerEpochError(
                    f"producer {pid} epoch {epoch} is older than the current epoch {cur_epoch}: "
                    "another producer instance fenced this one"
                )
            if first_seq < 0:
                pending[pid] = (epoch, cur_last if epoch == cur_epoch else None)
                continue
            last_seq = _last_seq(first_seq, h[H_LOD])
            if known is not None and pid not in pending and epoch == known.epoch:
                for b_first, b_last, b_base, b_end in known.batches:
                    if b_first == first_seq and b_last == last_seq:
                        return AppendResult(b_base, b_end, True)
            if cur_epoch is not None:
                if epoch > cur_epoch and first_seq != 0:
                    raise OutOfOrderSequenceError(
                        f"producer {pid} started epoch {epoch} at sequence {first_seq}, not 0"
                    )
                if epoch == cur_epoch and cur_last is not None and first_seq != _next_seq(cur_last):
                    raise OutOfOrderSequenceError(
                        f"producer {pid} sent sequence {first_seq}, expected {_next_seq(cur_last)}"
                    )
            pending[pid] = (epoch, last_seq)
        return None

    def _apply_producer(self, header: tuple[int, ...]) -> None:
        pid = header[H_PID]
        if pid < 0:
            return
        first_seq = header[H_BASE_SEQ]
        last_seq = _last_seq(first_seq, header[H_LOD]) if first_seq >= 0 else -1
        base = header[H_BASE]
        producer = self._producers.get(pid)
        if producer is None:
            producer = self._producers[pid] = _Producer(header[H_PEPOCH])
        producer.apply(header[H_PEPOCH], first_seq, last_seq, base, base + header[H_LOD])

    def _track_txn(self, header: tuple[int, ...], head: Any) -> None:
        """Open or close the producer's transaction; ``head()`` gives a control batch's start."""
        attrs = header[H_ATTR]
        if not attrs & ATTR_TRANSACTIONAL:
            return
        control = control_type(head()) if attrs & ATTR_CONTROL else None
        if attrs & ATTR_CONTROL and control is None:
            logger.warning(
                "%s: control batch at offset %d has no readable marker; treated as abort",
                self.directory,
                header[H_BASE],
            )
            control = 0
        self._txns.on_batch(header[H_PID], header[H_BASE], True, control)

    def _roll(self) -> None:
        old = self._active
        fsync = self.config.flush == "fsync"
        old.write_indexes(fsync=fsync)
        if fsync:
            old.fsync()
        new = Segment(self.directory, old.next_offset, self.config.index_interval_bytes)
        self._segments.append(new)
        self._bases.append(new.base_offset)
        self._active_since_ms = None
        self._write_state(clean=False)
        logger.debug("Rolled %s at offset %d", self.directory, new.base_offset)

    def sync_if_due(self, now_ms: int) -> None:
        """With flush='fsync', fsync unsynced data once fsync_interval_ms has passed."""
        if (
            self._unsynced
            and self.config.flush == "fsync"
            and now_ms - self._last_fsync_ms >= self.config.fsync_interval_ms
        ):
            self.flush()
            self._last_fsync_ms = now_ms

    # ------------------------------------------------------------------ reading

    def _segment_index(self, offset: int) -> int:
        return max(bisect_right(self._bases, offset) - 1, 0)

    def read(self, offset: int, max_bytes: int, *, upper: int | None = None) -> bytes:
        """Whole batches from the one containing ``offset``: at least one, then up to max_bytes.

        With ``upper`` (the last stable offset for read_committed) no batch starting at or after
        it is returned.
        """
        end = self.end_offset
        if offset == end or (upper is not None and offset >= upper and offset <= end):
            return b""
        if offset > end or offset < self.log_start_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self.log_start_offset}, {end}] for "
                f"{self.directory.name}"
            )
        out: list[bytes] = []
        remaining = max_bytes
        force = True
        first = True
        for seg in self._segments[self._segment_index(offset) :]:
            pos = seg.find(offset) if first else 0
            first = False
            if pos is None:
                continue
            data = seg.read_from(pos, remaining, force_first=force)
            if data:
                out.append(data)
                remaining -= len(data)
                force = False
            if pos + len(data) < seg.size or remaining < HEADER_SIZE:
                break
        data = b"".join(out)
        if upper is not None and upper < end:
            data = _cut_at(data, upper)
        return data

    def batches_from(self, offset: int) -> Iterator[BatchInfo]:
        """Headers of the batches from the one containing ``offset`` to the end of the log."""
        first = True
        for seg in self._segments[self._segment_index(offset) :]:
            start = seg.lookup(offset) if first else 0
            first = False
            for _, header in seg.headers_from(start):
                if header[H_BASE] + header[H_LOD] >= offset:
                    yield batch_info(header)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(base offset, max timestamp) of the first batch with max timestamp >= timestamp_ms."""
        for seg in self._segments:
            found = seg.find_timestamp(timestamp_ms)
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------ maintenance

    def enforce_retention(self, now_ms: int) -> int:
        """Delete whole closed segments past retention.ms or beyond retention.bytes."""
        cfg = self.config
        if "delete" not in cfg.cleanup_policy:
            return 0
        total = self.size_bytes
        deleted = 0
        while len(self._segments) > 1:
            seg = self._segments[0]
            newest = seg.max_timestamp if seg.max_timestamp >= 0 else _mtime_ms(seg.log_path)
            expired = cfg.retention_ms >= 0 and now_ms - newest > cfg.retention_ms
            oversize = cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
            if not (expired or oversize or seg.size == 0):
                break
            total -= seg.size
            seg.delete()
            del self._segments[0]
            del self._bases[0]
            deleted += 1
        if deleted:
            self._txns.drop_before(self.log_start_offset)
            logger.info(
                "Retention removed %d segment(s) of %s; log now starts at offset %d",
                deleted,
                self.directory,
                self.log_start_offset,
            )
        return deleted

    def compaction_due(self, now_ms: int) -> bool:
        """Whether maintenance should compact: enough new data and an eligible closed segment."""
        cfg = self.config
        if "compact" not in cfg.cleanup_policy or len(self._segments) < 2:
            return False
        if self._appended_since_compaction < cfg.min_cleanable_dirty_ratio * self.size_bytes:
            return False
        return self._segments[0].max_timestamp <= now_ms - cfg.min_compaction_lag_ms

    def compact(self, now_ms: int) -> int:
        """Keep only the newest record per key in closed segments; returns records removed.

        Offsets never change; batches left empty are dropped. Transactional and control batches,
        records without a key and batches in codecs other than none/gzip are kept as they are.
        """
        if "compact" not in self.config.cleanup_policy or len(self._segments) < 2:
            return 0
        self._appended_since_compaction = 0
        latest: dict[bytes, int] = {}
        for seg in self._segments:
            for header, batch in seg.batches():
                records = _compactable(header, batch)
                for record in records or ():
                    if record.key is not None:
                        latest[record.key] = record.offset
        cutoff = now_ms - self.config.min_compaction_lag_ms
        removed_total = 0
        for seg in self._segments[:-1]:
            if seg.max_timestamp > cutoff:
                break
            removed_total += self._compact_segment(seg, latest)
        if removed_total:
            logger.info("Compaction removed %d record(s) from %s", removed_total, self.directory)
        return removed_total

    def _compact_segment(self, seg: Segment, latest: dict[bytes, int]) -> int:
        out = bytearray()
        removed = 0
        for header, batch in seg.batches():
            records = _compactable(header, batch)
            if records is None:
                out += batch
                continue
            kept = [r for r in records if r.key is None or latest.get(r.key) == r.offset]
            if len(kept) == len(records):
                out += batch
                continue
            removed += len(records) - len(kept)
            if kept:
                out += compact_batch(batch, kept)
        if not removed:
            return 0
        tmp = seg.log_path.with_name(seg.log_path.name + ".cleaned")
        with open(tmp, "wb") as fh:
            fh.write(out)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, seg.log_path)
        seg.reopen()
        seg.recover(verify=False)
        seg.write_indexes(fsync=True)
        return removed

    # ------------------------------------------------------------------ tooling and shutdown

    def truncate_to(self, offset: int) -> None:
        """Drop everything from the batch containing ``offset`` onwards (tests and tooling)."""
        if offset >= self.end_offset:
            return
        while len(self._segments) > 1 and self._segments[-1].base_offset >= offset:
            self._segments.pop().delete()
            self._bases.pop()
        seg = self._active
        if offset < seg.base_offset:
            seg.delete()
            self._segments[-1] = Segment(self.directory, offset, self.config.index_interval_bytes)
            self._bases[-1] = offset
        else:
            pos = seg.find(offset)
            if pos is not None:
                seg.truncate(pos)
        self._producers = {}
        self._txns.reset()
        for s in self._segments:
            for pos, header in s.headers_from(0):
                self._apply_producer(header)
                self._track_txn(header, lambda s=s, pos=pos: s.pread(pos, _CONTROL_PEEK))
        self._active_since_ms = None
        self._write_state(clean=False)

    def flush(self) -> None:
        """fsync the active segment (older segments were synced when rolled in fsync mode)."""
        if not self._closed:
            self._active.fsync()
            self._unsynced = False

    def close(self) -> None:
        """Persist indexes and producer state and mark the shutdown clean."""
        if self._closed:
            return
        active = self._active
        active.write_indexes(fsync=True)
        active.fsync()
        self._write_state(clean=True)
        for seg in self._segments:
            seg.close()
        self._txns.close()
        self._closed = True

    def delete_files(self) -> None:
        """Close and remove every file of this log (topic deletion)."""
        for seg in self._segments:
            seg.delete()
        (self.directory / _STATE_FILE).unlink(missing_ok=True)
        self._txns.delete()
        self._closed = True

    def __repr__(self) -> str:
        return (
            f"PartitionLog({str(self.directory)!r}, start={self.log_start_offset}, "
            f"end={self.end_offset}, segments={len(self._segments)})"
        )


def _cut_at(data: bytes, upper: int) -> bytes:
    """The leading whole batches of ``data`` that start before offset ``upper``."""
    pos = 0
    size = len(data)
    while pos + _BATCH_PREFIX.size <= size:
        base, length = _BATCH_PREFIX.unpack_from(data, pos)
        if base >= upper:
            break
        pos += 12 + length
    return data if pos >= size else data[:pos]


def _compactable(header: tuple[int, ...], batch: bytes) -> list[RawRecord] | None:
    if header[H_ATTR] & (ATTR_TRANSACTIONAL | ATTR_CONTROL):
        return None
    return parse_records(batch)


def _mtime_ms(path: Path) -> int:
    try:
        return int(path.stat().st_mtime * 1000)
    except FileNotFoundError:
        return 0


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        logger.warning("%s is unreadable; the whole log will be verified", path)
        return None
    return state if isinstance(state, dict) else None
