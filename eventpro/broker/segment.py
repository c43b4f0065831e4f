"""One log segment: ``<base offset>.log`` plus its sparse ``.index`` and ``.timeindex`` files.

Index entries live in memory (lists searched with bisect) and are written to disk when the segment
is rolled, flushed or closed; a crash loses only index entries of segments that recovery re-scans
anyway. File formats follow Kafka: ``.index`` holds (relative offset i32, position i32) pairs and
``.timeindex`` holds (timestamp i64, relative offset i32) pairs, both big-endian.
"""

from __future__ import annotations

import logging
import os
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from pathlib import Path

from crc32c import crc32c

from eventpro.broker.records import (
    CRC_START,
    H_BASE,
    H_CRC,
    H_LEN,
    H_LOD,
    H_MAGIC,
    H_MAX_TS,
    HEADER,
    HEADER_SIZE,
    MIN_BATCH_LENGTH,
)

__all__ = ("Segment", "segment_files")

logger = logging.getLogger(__name__)

_INDEX_ENTRY = struct.Struct(">iI")
_TIME_ENTRY = struct.Struct(">qi")
_LENGTH = struct.Struct(">i")
_SCAN_CHUNK = 1 << 20
_HEADER_CHUNK = 64 * 1024


def segment_files(directory: Path, base_offset: int) -> tuple[Path, Path, Path]:
    """The ``.log``, ``.index`` and ``.timeindex`` paths of the segment starting at base_offset."""
    stem = f"{base_offset:020d}"
    return directory / f"{stem}.log", directory / f"{stem}.index", directory / f"{stem}.timeindex"


def _write_atomic(path: Path, data: bytes, *, fsync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


class Segment:
    """An append-only file of record batches starting at ``base_offset``."""

    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.log_path, self.index_path, self.timeindex_path = segment_files(directory, base_offset)
        self._interval = index_interval_bytes
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self._fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.last_batch_base = -1
        self._idx_off: list[int] = []
        self._idx_pos: list[int] = []
        self._time_ts: list[int] = []
        self._time_off: list[int] = []
        self._bytes_since_index = 0

    # ------------------------------------------------------------------ loading and recovery

    def load_indexes(self) -> bool:
        """Load the index files and find the segment's end from the last entry; False if stale."""
        try:
            raw_idx = self.index_path.read_bytes()
            raw_time = self.timeindex_path.read_bytes()
        except FileNotFoundError:
            return False
        if len(raw_idx) % _INDEX_ENTRY.size or len(raw_time) % _TIME_ENTRY.size:
            return False
        offs: list[int] = []
        poss: list[int] = []
        for rel, pos in _INDEX_ENTRY.iter_unpack(raw_idx):
            off = self.base_offset + rel
            if pos >= self.size or (poss and (pos <= poss[-1] or off <= offs[-1])):
                return False
            offs.append(off)
            poss.append(pos)
        tss: list[int] = []
        toffs: list[int] = []
        for ts, rel in _TIME_ENTRY.iter_unpack(raw_time):
            if tss and ts <= tss[-1]:
                return False
            tss.append(ts)
            toffs.append(self.base_offset + rel)
        self._idx_off, self._idx_pos, self._time_ts, self._time_off = offs, poss, tss, toffs
        self.max_timestamp = tss[-1] if tss else -1
        start = poss[-1] if poss else 0
        end = start
        try:
            for pos, header in self.headers_from(start):
                end = pos + 12 + header[H_LEN]
                self._note_batch(header)
        except ValueError:
            return False
        if end != self.size:
            return False
        self._bytes_since_index = self.size - start
        return True

    def recover(
        self, *, verify: bool, on_batch: Callable[[int, tuple[int, ...]], None] | None = None
    ) -> tuple[int, str] | None:
        """Rebuild the indexes by scanning the whole file.

        With ``verify`` every batch's length, magic and CRC is checked, and the file is truncated
        at the first bad batch. Returns ``(bytes truncated, reason)``, or None if it was intact.
        """
        self._idx_off, self._idx_pos, self._time_ts, self._time_off = [], [], [], []
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.last_batch_base = -1
        self._bytes_since_index = 0
        pos, reason = 0, ""
        buf = b""
        buf_start = 0
        size = self.size
        while pos < size:
            if pos + HEADER_SIZE > buf_start + len(buf):
                buf = os.pread(self._fd, max(_SCAN_CHUNK, HEADER_SIZE), pos)
                buf_start = pos
            rel = pos - buf_start
            if len(buf) - rel < HEADER_SIZE:
                reason = "a batch header is cut off"
                break
            header = HEADER.unpack_from(buf, rel)
            length = header[H_LEN]
            end = pos + 12 + length
            if header[H_MAGIC] != 2 or length < MIN_BATCH_LENGTH:
                reason = "a batch header is garbage"
                break
            if end > size:
                reason = "the last batch is cut off"
                break
            if header[H_BASE] < self.next_offset:
                reason = "batch offsets go backwards"
                break
            if verify:
                if end > buf_start + len(buf):
                    buf = os.pread(self._fd, max(_SCAN_CHUNK, end - pos), pos)
                    buf_start = pos
                    rel = 0
                body = memoryview(buf)[rel + CRC_START : rel + 12 + length]
                if crc32c(body) != header[H_CRC]:
                    reason = "a batch fails its CRC check"
                    break
            self._index_batch(pos, header, 12 + length)
            if on_batch is not None:
                on_batch(pos, header)
            pos = end
        if pos < size:
            os.ftruncate(self._fd, pos)
            self.size = pos
            return size - pos, reason
        return None

    # ------------------------------------------------------------------ appending

    def _note_batch(self, header: tuple[int, ...]) -> None:
        self.next_offset = header[H_BASE] + header[H_LOD] + 1
        self.last_batch_base = header[H_BASE]
        if header[H_MAX_TS] > self.max_timestamp:
            self.max_timestamp = header[H_MAX_TS]

    def _index_batch(self, pos: int, header: tuple[int, ...], size: int) -> None:
        if self._bytes_since_index >= self._interval:
            base = header[H_BASE]
            self._idx_off.append(base)
            self._idx_pos.append(pos)
            self._bytes_since_index = 0
            self._note_batch(header)
            if self.max_timestamp > (self._time_ts[-1] if self._time_ts else -1):
                self._time_ts.append(self.max_timestamp)
                self._time_off.append(base)
        else:
            self._note_batch(header)
        self.size = pos + size
        self._bytes_since_index += size

    def append(self, data: bytes | bytearray, batches: list[tuple[int, tuple[int, ...]]]) -> None:
        """Write ``data`` (batches with final offsets) and index it; ``batches`` = (pos, header)."""
        start = self.size
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.write(self._fd, view[written:])
        for rel, header in batches:
            nxt = start + rel + 12 + header[H_LEN]
            self._index_batch(start + rel, header, nxt - (start + rel))

    # ------------------------------------------------------------------ reading

    def lookup(self, offset: int) -> int:
        """File position of the last indexed batch starting at or before ``offset``."""
        i = bisect_right(self._idx_off, offset) - 1
        return self._idx_pos[i] if i >= 0 else 0

    def headers_from(self, pos: int) -> Iterator[tuple[int, tuple[int, ...]]]:
        """Yield (position, header) for each batch from ``pos`` to the end; reads in chunks."""
        size = self.size
        buf = b""
        buf_start = pos
        while pos < size:
            rel = pos - buf_start
            if rel + HEADER_SIZE > len(buf):
                buf = os.pread(self._fd, _HEADER_CHUNK, pos)
                buf_start, rel = pos, 0
                if len(buf) < HEADER_SIZE:
                    raise ValueError(f"{self.log_path}: batch header cut off at byte {pos}")
            header = HEADER.unpack_from(buf, rel)
            if header[H_LEN] < MIN_BATCH_LENGTH:
                raise ValueError(f"{self.log_path}: invalid batch length at byte {pos}")
            yield pos, header
            pos += 12 + header[H_LEN]

    def find(self, offset: int) -> int | None:
        """Position of the first batch whose last offset is >= ``offset``, or None."""
        if offset >= self.next_offset:
            return None
        for pos, header in self.headers_from(self.lookup(offset)):
            if header[H_BASE] + header[H_LOD] >= offset:
                return pos
        return None

    def read_from(self, pos: int, max_bytes: int, *, force_first: bool) -> bytes:
        """Whole batches from ``pos`` totalling <= max_bytes (the first one always if forced)."""
        remaining = self.size - pos
        if remaining <= 0:
            return b""
        buf = os.pread(self._fd, min(max(max_bytes, HEADER_SIZE), remaining), pos)
        first = _LENGTH.unpack_from(buf, 8)[0] + 12
        if first > len(buf):
            return os.pread(self._fd, first, pos) if force_first else b""
        cut = first
        while cut + 12 <= len(buf):
            nxt = cut + _LENGTH.unpack_from(buf, cut + 8)[0] + 12
            if nxt > len(buf):
                break
            cut = nxt
        if cut > max_bytes and not force_first:
            return b""
        return buf if cut == len(buf) else buf[:cut]

    def batches(self) -> Iterator[tuple[tuple[int, ...], bytes]]:
        """Yield (header, batch bytes) for every batch of the segment; reads in large chunks."""
        pos = 0
        buf = b""
        buf_start = 0
        while pos < self.size:
            rel = pos - buf_start
            if rel + 12 > len(buf):
                buf, buf_start, rel = os.pread(self._fd, _SCAN_CHUNK, pos), pos, 0
            length = _LENGTH.unpack_from(buf, rel + 8)[0] + 12
            if rel + length > len(buf):
                buf, buf_start, rel = os.pread(self._fd, max(_SCAN_CHUNK, length), pos), pos, 0
            batch = buf[rel : rel + length]
            yield HEADER.unpack_from(batch, 0), batch
            pos += length

    def pread(self, pos: int, size: int) -> bytes:
        """Up to ``size`` bytes of the file from ``pos``."""
        return os.pread(self._fd, size, pos)

    def truncate(self, pos: int) -> None:
        """Cut the file at ``pos`` (a batch boundary) and rebuild the in-memory indexes."""
        os.ftruncate(self._fd, pos)
        self.size = pos
        self.recover(verify=False)

    def find_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(base offset, max timestamp) of the first batch with max timestamp >= timestamp_ms."""
        if self.max_timestamp < timestamp_ms:
            return None
        i = bisect_left(self._time_ts, timestamp_ms) - 1
        start = self.lookup(self._time_off[i]) if i >= 0 else 0
        for _, header in self.headers_from(start):
            if header[H_MAX_TS] >= timestamp_ms:
                return header[H_BASE], header[H_MAX_TS]
        return None

    # ------------------------------------------------------------------ persistence

    def write_indexes(self, *, fsync: bool) -> None:
        """Persist both indexes, ending the time index with the segment's max timestamp."""
        if self.max_timestamp > (self._time_ts[-1] if self._time_ts else -1):
            self._time_ts.append(self.max_timestamp)
            self._time_off.append(max(self.last_batch_base, self.base_offset))
        base = self.base_offset
        idx = b"".join(
            _INDEX_ENTRY.pack(o - base, p)
            for o, p in zip(self._idx_off, self._idx_pos, strict=True)
        )
        tidx = b"".join(
            _TIME_ENTRY.pack(t, o - base)
            for t, o in zip(self._time_ts, self._time_off, strict=True)
        )
        _write_atomic(self.index_path, idx, fsync=fsync)
        _write_atomic(self.timeindex_path, tidx, fsync=fsync)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self.close()
        for path in (self.log_path, self.index_path, self.timeindex_path):
            path.unlink(missing_ok=True)

    def reopen(self) -> None:
        """Re-open the log file after it was replaced on disk (compaction)."""
        self.close()
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self._fd).st_size
