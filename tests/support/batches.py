"""Build real Kafka v2 record batches for storage tests with kio's writer."""

from __future__ import annotations

import datetime
import io
from collections.abc import Sequence

from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch, Record
from kio.records.writers import write_new_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

__all__ = ("make_batch", "read_all_records")


def make_batch(
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None] | None = None,
    *,
    timestamp_ms: int = 1_700_000_000_000,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
) -> bytes:
    """One batch of ``len(values)`` records, record i stamped ``timestamp_ms + i``."""
    keys = keys if keys is not None else [None] * len(values)
    records = tuple(
        Record(
            attributes=i8(0),
            timestamp=TZAwareMicros.parse(
                datetime.datetime.fromtimestamp((timestamp_ms + i) / 1000, datetime.UTC)
            ),
            offset=i64(i),
            key=key,
            value=value,
            headers=(),
        )
        for i, (key, value) in enumerate(zip(keys, values, strict=True))
    )
    buf = io.BytesIO()
    write_new_batch(
        buf,
        NewRecordBatch(
            producer_id=i64(producer_id),
            producer_epoch=i16(producer_epoch),
            base_sequence=i32(base_sequence),
            records=records,
            attributes=i16(attributes),
        ),
    )
    return buf.getvalue()


def read_all_records(data: bytes) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record in concatenated batches, checking each CRC."""
    out: list[tuple[int, bytes | None, bytes | None]] = []
    pos = 0
    while pos < len(data):
        batch, size = read_batch(data, pos)
        out.extend((int(r.offset), r.key, r.value) for r in batch.records)
        pos += size
    return out
