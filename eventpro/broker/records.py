"""Kafka v2 RecordBatch handling: header parsing and validation, and record keys for compaction.

Batches are stored exactly as clients sent them. Only the 61-byte header is parsed on the hot path;
the CRC (CRC32C over attributes..end) is checked with the C ``crc32c`` module, and the base offset,
which sits in front of the CRC-covered region, is rewritten in place. Record-level parsing exists
only for compaction, which keeps the surviving records' bytes verbatim (their offset and timestamp
deltas stay relative to the unchanged base offset and base timestamp).
"""

from __future__ import annotations

import gzip
import logging
import struct
from typing import NamedTuple

from crc32c import crc32c

from eventpro.broker.errors import CorruptRecordError

__all__ = (
    "ATTR_COMPRESSION_MASK",
    "ATTR_CONTROL",
    "ATTR_TRANSACTIONAL",
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "HEADER",
    "HEADER_SIZE",
    "BatchInfo",
    "RawRecord",
    "batch_info",
    "compact_batch",
    "control_batch",
    "control_type",
    "parse_records",
    "validate_batches",
)

logger = logging.getLogger(__name__)

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
# baseOffset, batchLength, partitionLeaderEpoch, magic, crc: the bytes before the CRC region.
CRC_START = 21
# Smallest batchLength: the header after the length field, with zero records.
MIN_BATCH_LENGTH = HEADER_SIZE - 12
ATTR_COMPRESSION_MASK = 0x07
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
_GZIP = 1

# Indices into a HEADER tuple.
H_BASE, H_LEN, H_EPOCH, H_MAGIC, H_CRC, H_ATTR, H_LOD = 0, 1, 2, 3, 4, 5, 6
H_BASE_TS, H_MAX_TS, H_PID, H_PEPOCH, H_BASE_SEQ, H_COUNT = 7, 8, 9, 10, 11, 12


class BatchInfo(NamedTuple):
    """What the log knows about a stored batch without reading its records."""

    base_offset: int
    last_offset: int
    attributes: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    max_timestamp: int
    size: int

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)


def batch_info(header: tuple[int, ...]) -> BatchInfo:
    """Turn a raw HEADER tuple into a :class:`BatchInfo`."""
    return BatchInfo(
        header[H_BASE],
        header[H_BASE] + header[H_LOD],
        header[H_ATTR],
        header[H_PID],
        header[H_PEPOCH],
        header[H_BASE_SEQ],
        header[H_MAX_TS],
        header[H_LEN] + 12,
    )


def validate_batches(data: bytes | bytearray | memoryview) -> list[tuple[int, tuple[int, ...]]]:
    """Check every batch in ``data`` and return ``(position, header)`` pairs.

    Raises :class:`CorruptRecordError` on the first problem, so a request is all-or-nothing.
    """
    view = memoryview(data)
    total = len(view)
    if total == 0:
        raise CorruptRecordError("the produce request carries no record batches")
    out: list[tuple[int, tuple[int, ...]]] = []
    pos = 0
    unpack = HEADER.unpack_from
    while pos < total:
        if total - pos < HEADER_SIZE:
            raise CorruptRecordError(f"truncated record batch header at byte {pos}")
        header = unpack(view, pos)
        length = header[H_LEN]
        end = pos + 12 + length
        if header[H_MAGIC] != 2:
            raise CorruptRecordError(
                f"record batch at byte {pos} has magic {header[H_MAGIC]}; only v2 (magic 2) "
                "batches are supported: upgrade the client"
            )
        if length < MIN_BATCH_LENGTH or end > total:
            raise CorruptRecordError(f"record batch at byte {pos} has invalid length {length}")
        if crc32c(view[pos + CRC_START : end]) != header[H_CRC]:
            raise CorruptRecordError(f"record batch at byte {pos} fails its CRC32C check")
        count = header[H_COUNT]
        if count < 1 or header[H_LOD] != count - 1:
            raise CorruptRecordError(
                f"record batch at byte {pos} has {count} records but lastOffsetDelta "
                f"{header[H_LOD]}"
            )
        out.append((pos, header))
        pos = end
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a zigzag varint; returns (value, new position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecordError("record data ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes in record data")
    return (result >> 1) ^ -(result & 1), pos


class RawRecord(NamedTuple):
    """One record: its absolute offset, key and encoded bytes (length prefix included)."""

    offset: int
    key: bytes | None
    raw: bytes


def _records_region(batch: bytes) -> bytes | None:
    """The uncompressed record bytes of a batch, or None when its codec is not supported here."""
    codec = HEADER.unpack_from(batch, 0)[H_ATTR] & ATTR_COMPRESSION_MASK
    body = batch[HEADER_SIZE:]
    if codec == 0:
        return body
    if codec == _GZIP:
        return gzip.decompress(body)
    return None


def parse_records(batch: bytes) -> list[RawRecord] | None:
    """Split a stored batch into records; None if it is compressed with an unsupported codec."""
    header = HEADER.unpack_from(batch, 0)
    region = _records_region(batch)
    if region is None:
        return None
    base = header[H_BASE]
    out: list[RawRecord] = []
    pos = 0
    for _ in range(header[H_COUNT]):
        start = pos
        length, pos = _varint(region, pos)
        body_start = pos
        pos += 1  # attributes
        _, pos = _varint(region, pos)  # timestamp delta
        offset_delta, pos = _varint(region, pos)
        key_len, pos = _varint(region, pos)
        key = None if key_len < 0 else bytes(region[pos : pos + key_len])
        end = body_start + length
        if length < 0 or end > len(region):
            raise CorruptRecordError(f"record at offset {base + offset_delta} overruns its batch")
        out.append(RawRecord(base + offset_delta, key, bytes(region[start:end])))
        pos = end
    return out


def compact_batch(batch: bytes, kept: list[RawRecord]) -> bytes:
    """Rebuild ``batch`` with only ``kept`` records.

    Base offset, lastOffsetDelta and timestamps stay as they were, so the batch still covers its
    original offset range (Kafka does the same) and the surviving records' deltas stay valid.
    """
    header = list(HEADER.unpack_from(batch, 0))
    region = b"".join(r.raw for r in kept)
    if header[H_ATTR] & ATTR_COMPRESSION_MASK == _GZIP:
        region = gzip.compress(region)
    header[H_COUNT] = len(kept)
    header[H_LEN] = HEADER_SIZE - 12 + len(region)
    header[H_CRC] = 0
    out = bytearray(HEADER.pack(*header))
    out += region
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


CONTROL_ABORT = 0
CONTROL_COMMIT = 1
_CONTROL_KEY = struct.Struct(">hh")
_CONTROL_VALUE = struct.Struct(">hi")


def _zigzag(value: int) -> bytes:
    """Encode a signed varint (Kafka record fields)."""
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = raw & 0x7F
        raw >>= 7
        if raw:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def control_batch(
    producer_id: int,
    producer_epoch: int,
    *,
    commit: bool,
    coordinator_epoch: int = 0,
    timestamp_ms: int = 0,
) -> bytes:
    """A commit or abort marker: a transactional control batch holding one record.

    Kafka's layout: key = (version 0, type 0 abort / 1 commit), value = (version 0, coordinator
    epoch). Readers skip it, but it takes one offset, which ends the producer's transaction.
    """
    key = _CONTROL_KEY.pack(0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    value = _CONTROL_VALUE.pack(0, coordinator_epoch)
    body = (
        b"\0"  # record attributes
        + _zigzag(0)  # timestamp delta
        + _zigzag(0)  # offset delta
        + _zigzag(len(key))
        + key
        + _zigzag(len(value))
        + value
        + _zigzag(0)  # headers
    )
    record = _zigzag(len(body)) + body
    header = HEADER.pack(
        0,
        HEADER_SIZE - 12 + len(record),
        0,
        2,
        0,
        ATTR_TRANSACTIONAL | ATTR_CONTROL,
        0,
        timestamp_ms,
        timestamp_ms,
        producer_id,
        producer_epoch,
        -1,
        1,
    )
    out = bytearray(header)
    out += record
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def control_type(batch: bytes | bytearray | memoryview) -> int | None:
    """CONTROL_COMMIT or CONTROL_ABORT for a control batch's first record; None if unreadable."""
    view = bytes(batch[HEADER_SIZE : HEADER_SIZE + 64])
    try:
        _, pos = _varint(view, 0)  # record length
        pos += 1  # attributes
        _, pos = _varint(view, pos)  # timestamp delta
        _, pos = _varint(view, pos)  # offset delta
        key_len, pos = _varint(view, pos)
    except CorruptRecordError:
        return None
    if key_len < _CONTROL_KEY.size or pos + _CONTROL_KEY.size > len(view):
        return None
    _, kind = _CONTROL_KEY.unpack_from(view, pos)
    return kind if kind in (CONTROL_ABORT, CONTROL_COMMIT) else None
