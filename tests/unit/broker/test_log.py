"""PartitionLog: offsets, reads, segments, idempotence, retention, compaction, timestamps."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from crc32c import crc32c
from support.batches import make_batch, read_all_records

from eventpro.broker.errors import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidProducerEpochError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
)
from eventpro.broker.log import LogConfig, PartitionLog
from eventpro.broker.records import (
    ATTR_TRANSACTIONAL,
    HEADER,
    compact_batch,
    parse_records,
)

T0 = 1_700_000_000_000


def values(n: int, prefix: str = "v") -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


@pytest.fixture
def log(tmp_path: Path) -> PartitionLog:
    return PartitionLog.open(tmp_path / "p0", LogConfig())


def test_offsets_are_assigned_per_record(log: PartitionLog) -> None:
    first = log.append(make_batch(values(5)))
    second = log.append(make_batch(values(3)))
    assert (first.base_offset, first.last_offset, first.duplicate) == (0, 4, False)
    assert (second.base_offset, second.last_offset) == (5, 7)
    assert log.end_offset == 8
    assert log.log_start_offset == 0
    assert [o for o, _, _ in read_all_records(log.read(0, 1 << 20))] == list(range(8))


def test_several_batches_in_one_request(log: PartitionLog) -> None:
    result = log.append(make_batch(values(4)) + make_batch(values(6)))
    assert (result.base_offset, result.last_offset) == (0, 9)
    assert [o for o, _, _ in read_all_records(log.read(0, 1 << 20))] == list(range(10))


def test_read_from_the_middle_of_a_batch_returns_the_containing_batch(log: PartitionLog) -> None:
    log.append(make_batch(values(10)))
    log.append(make_batch(values(10, "w")))
    records = read_all_records(log.read(13, 1 << 20))
    assert records[0][0] == 10
    assert records[-1][0] == 19


def test_read_at_end_is_empty_and_beyond_is_out_of_range(log: PartitionLog) -> None:
    log.append(make_batch(values(3)))
    assert log.read(3, 1000) == b""
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 1000)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 1000)


def test_max_bytes_returns_whole_batches_and_at_least_one(log: PartitionLog) -> None:
    batches = [make_batch(values(20, f"b{i}-")) for i in range(5)]
    for batch in batches:
        log.append(batch)
    size = len(batches[0])
    assert len(log.read(0, 1)) == size
    assert len(log.read(0, size)) == size
    assert len(log.read(0, 2 * size + size // 2)) == 2 * size
    assert len(log.read(0, 1 << 20)) == 5 * size


def test_rolls_segments_and_reads_across_them(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig(segment_bytes=1000, index_interval_bytes=100))
    expected: list[bytes] = []
    for i in range(40):
        vals = values(7, f"r{i}-")
        expected.extend(vals)
        log.append(make_batch(vals))
    assert log.segment_count > 5
    assert log.end_offset == 280
    got = read_all_records(log.read(0, 1 << 20))
    assert [v for _, _, v in got] == expected
    assert [o for o, _, _ in got] == list(range(280))
    for offset in (0, 6, 7, 100, 150, 279):
        first = read_all_records(log.read(offset, 1))
        assert first[0][0] <= offset <= first[-1][0]


def test_reopen_after_close_loses_nothing(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=2000, index_interval_bytes=64)
    log = PartitionLog.open(tmp_path / "p", config)
    for i in range(30):
        log.append(make_batch(values(5, f"x{i}-"), timestamp_ms=T0 + i * 10))
    before = log.read(0, 1 << 22)
    log.close()
    reopened = PartitionLog.open(tmp_path / "p", config)
    assert reopened.end_offset == 150
    assert reopened.read(0, 1 << 22) == before
    assert reopened.append(make_batch(values(2))).base_offset == 150
    assert reopened.offset_for_timestamp(T0 + 100) == (50, T0 + 104)


def test_rejects_bad_crc_and_writes_nothing(log: PartitionLog) -> None:
    good = make_batch(values(3))
    bad = bytearray(make_batch(values(3)))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        log.append(good + bytes(bad))
    assert log.end_offset == 0
    assert log.size_bytes == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:30],
        lambda b: b[:-1],
        lambda b: b[:16] + b"\x01" + b[17:],
        lambda b: b"",
    ],
    ids=["truncated-header", "short-batch", "magic-1", "empty"],
)
def test_rejects_malformed_batches(log: PartitionLog, mutate: object) -> None:
    with pytest.raises(CorruptRecordError):
        log.append(mutate(make_batch(values(3))))  # type: ignore[operator]
    assert log.end_offset == 0


def test_rejects_requests_over_max_message_bytes(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig(max_message_bytes=100))
    with pytest.raises(MessageTooLargeError):
        log.append(make_batch([b"x" * 200]))
    assert log.end_offset == 0


# ---------------------------------------------------------------- idempotent producers


def idem(n: int, seq: int, *, pid: int = 7, epoch: int = 0) -> bytes:
    return make_batch(values(n), producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def test_duplicate_batch_returns_original_offsets(log: PartitionLog) -> None:
    log.append(make_batch(values(2)))
    first = log.append(idem(3, 0))
    second = log.append(idem(4, 3))
    retry = log.append(idem(3, 0))
    assert retry.duplicate
    assert (retry.base_offset, retry.last_offset) == (first.base_offset, first.last_offset)
    assert log.append(idem(4, 3)).duplicate
    assert log.end_offset == second.last_offset + 1 == 9


def test_sequence_gap_is_rejected(log: PartitionLog) -> None:
    log.append(idem(3, 0))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(idem(3, 5))
    assert log.end_offset == 3


def test_old_epoch_is_fenced_and_new_epoch_starts_at_zero(log: PartitionLog) -> None:
    log.append(idem(3, 0, epoch=1))
    with pytest.raises(InvalidProducerEpochError):
        log.append(idem(3, 3, epoch=0))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(idem(3, 3, epoch=2))
    assert log.append(idem(3, 0, epoch=2)).base_offset == 3


def test_producer_state_survives_clean_and_unclean_restart(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=300)
    log = PartitionLog.open(tmp_path / "p", config)
    for seq in range(0, 30, 3):
        log.append(idem(3, seq))
    log.close()
    log = PartitionLog.open(tmp_path / "p", config)
    assert log.append(idem(3, 27)).duplicate
    log.append(idem(3, 30))
    # no close: simulate a crash by reopening from the files as they are
    crashed = PartitionLog.open(tmp_path / "p", config)
    dup = crashed.append(idem(3, 30))
    assert dup.duplicate and dup.base_offset == 30
    assert crashed.append(idem(3, 33)).base_offset == 33


def test_unknown_producer_may_start_at_any_sequence(log: PartitionLog) -> None:
    assert log.append(idem(2, 40, pid=99)).base_offset == 0
    assert log.append(idem(2, 42, pid=99)).base_offset == 2


def test_plain_producers_are_never_deduplicated(log: PartitionLog) -> None:
    batch = make_batch(values(2))
    log.append(batch)
    assert not log.append(batch).duplicate
    assert log.end_offset == 4


# ---------------------------------------------------------------- timestamps


def test_offset_for_timestamp(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig(segment_bytes=500, index_interval_bytes=50))
    for i in range(20):
        log.append(make_batch(values(5), timestamp_ms=T0 + i * 1000))
    assert log.offset_for_timestamp(T0) == (0, T0 + 4)
    assert log.offset_for_timestamp(T0 + 5) == (5, T0 + 1004)
    assert log.offset_for_timestamp(T0 + 7_002) == (35, T0 + 7004)
    assert log.offset_for_timestamp(T0 + 19_004) == (95, T0 + 19_004)
    assert log.offset_for_timestamp(T0 + 19_005) is None


def test_offset_for_timestamp_with_out_of_order_timestamps(log: PartitionLog) -> None:
    log.append(make_batch(values(2), timestamp_ms=T0 + 5000))
    log.append(make_batch(values(2), timestamp_ms=T0))
    log.append(make_batch(values(2), timestamp_ms=T0 + 9000))
    assert log.offset_for_timestamp(T0 + 100) == (0, T0 + 5001)
    assert log.offset_for_timestamp(T0 + 6000) == (4, T0 + 9001)


def test_batches_from_exposes_headers(log: PartitionLog) -> None:
    log.append(make_batch(values(3)))
    log.append(idem(2, 0, pid=5, epoch=3))
    infos = list(log.batches_from(1))
    assert [(b.base_offset, b.last_offset) for b in infos] == [(0, 2), (3, 4)]
    assert (infos[1].producer_id, infos[1].producer_epoch, infos[1].is_control) == (5, 3, False)


# ---------------------------------------------------------------- retention


def test_retention_by_time_drops_old_closed_segments(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=400, retention_ms=10_000)
    log = PartitionLog.open(tmp_path / "p", config)
    for i in range(12):
        log.append(make_batch(values(4), timestamp_ms=T0 + i * 2_000), now_ms=T0)
    segments = log.segment_count
    deleted = log.enforce_retention(now_ms=T0 + 22_000 + 10_001)
    assert 0 < deleted < segments
    assert log.log_start_offset > 0
    assert log.segment_count == segments - deleted
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 1000)
    remaining = read_all_records(log.read(log.log_start_offset, 1 << 20))
    assert remaining[-1][0] == log.end_offset - 1
    closed_left = log.segment_count - 1
    assert log.enforce_retention(now_ms=T0 + 10**9) == closed_left
    assert log.segment_count == 1


def test_retention_by_bytes_keeps_at_least_the_limit(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=300, retention_ms=-1, retention_bytes=1000)
    log = PartitionLog.open(tmp_path / "p", config)
    for _ in range(30):
        log.append(make_batch(values(4)))
    assert log.enforce_retention(now_ms=T0) > 0
    assert log.size_bytes >= 1000
    assert log.enforce_retention(now_ms=T0) == 0


def test_retention_ignores_compact_only_topics(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=300, retention_ms=1, cleanup_policy=frozenset({"compact"}))
    log = PartitionLog.open(tmp_path / "p", config)
    for _ in range(10):
        log.append(make_batch(values(4)))
    assert log.enforce_retention(now_ms=T0 * 2) == 0


# ---------------------------------------------------------------- compaction


def test_compaction_keeps_last_record_per_key_with_original_offsets(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=600, cleanup_policy=frozenset({"compact"}))
    log = PartitionLog.open(tmp_path / "p", config)
    written: list[tuple[int, bytes | None, bytes | None]] = []
    for round_ in range(20):
        keys = [f"k{(round_ + j) % 7}".encode() for j in range(3)]
        vals = [f"r{round_}-{j}".encode() for j in range(3)]
        result = log.append(make_batch(vals, keys))
        written.extend(
            zip(range(result.base_offset, result.last_offset + 1), keys, vals, strict=True)
        )
    log.append(make_batch([b"no-key"], [None]))
    end = log.end_offset
    removed = log.compact(now_ms=T0 * 2)
    assert removed > 0
    assert log.end_offset == end
    after = read_all_records(log.read(0, 1 << 22))
    assert len(after) == len(written) + 1 - removed
    latest = {k: (o, v) for o, k, v in written}
    state = {k: (o, v) for o, k, v in after if k is not None}
    assert state == latest
    offsets = [o for o, _, _ in after]
    assert offsets == sorted(offsets)
    assert all(o in {w[0] for w in written} | {end - 1} for o in offsets)
    assert log.compact(now_ms=T0 * 2) == 0
    log.close()
    reopened = PartitionLog.open(tmp_path / "p", config)
    assert read_all_records(reopened.read(0, 1 << 22)) == after
    assert reopened.end_offset == end


def test_compaction_never_touches_the_active_segment(tmp_path: Path) -> None:
    config = LogConfig(cleanup_policy=frozenset({"compact"}))
    log = PartitionLog.open(tmp_path / "p", config)
    for i in range(5):
        log.append(make_batch([f"{i}".encode()], [b"same"]))
    assert log.compact(now_ms=T0 * 2) == 0
    assert len(read_all_records(log.read(0, 1 << 20))) == 5


def test_compaction_respects_min_lag(tmp_path: Path) -> None:
    config = LogConfig(
        segment_bytes=200, cleanup_policy=frozenset({"compact"}), min_compaction_lag_ms=60_000
    )
    log = PartitionLog.open(tmp_path / "p", config)
    for i in range(10):
        log.append(make_batch([f"{i}".encode()], [b"same"], timestamp_ms=T0))
    assert log.compact(now_ms=T0 + 1_000) == 0
    assert log.compact(now_ms=T0 + 61_000) > 0


# ---------------------------------------------------------------- configs and truncation


def test_from_topic_configs_maps_kafka_names() -> None:
    config = LogConfig.from_topic_configs(
        {
            "cleanup.policy": "compact,delete",
            "retention.ms": "3600000",
            "segment.bytes": "1048576",
            "max.message.bytes": "1000",
            "min.compaction.lag.ms": "5",
            "retention.bytes": None,
            "some.unknown.key": "whatever",
        },
        LogConfig(),
    )
    assert config.cleanup_policy == frozenset({"compact", "delete"})
    assert (config.retention_ms, config.segment_bytes) == (3_600_000, 1_048_576)
    assert (config.max_message_bytes, config.min_compaction_lag_ms) == (1000, 5)
    assert config.retention_bytes == -1


@pytest.mark.parametrize(
    "configs",
    [
        {"cleanup.policy": "shred"},
        {"cleanup.policy": ""},
        {"retention.ms": "soon"},
        {"retention.ms": "-2"},
        {"segment.bytes": "1"},
    ],
)
def test_from_topic_configs_rejects_bad_values(configs: dict[str, str]) -> None:
    with pytest.raises(InvalidConfigError):
        LogConfig.from_topic_configs(configs, LogConfig())


def test_truncate_to(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig(segment_bytes=300))
    for _ in range(10):
        log.append(make_batch(values(4)))
    log.truncate_to(22)
    assert log.end_offset == 20
    assert log.append(make_batch(values(1))).base_offset == 20
    log.truncate_to(3)
    assert log.end_offset == 0
    assert log.read(0, 100) == b""


def gzip_batch(vals: list[bytes], keys: list[bytes | None]) -> bytes:
    plain = bytearray(make_batch(vals, keys))
    records = parse_records(bytes(plain))
    assert records is not None
    struct.pack_into(">h", plain, 21, 1)  # attributes: gzip
    return compact_batch(bytes(plain), records)


def test_compaction_of_gzip_batches_keeps_them_valid(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=300, cleanup_policy=frozenset({"compact"}))
    log = PartitionLog.open(tmp_path / "p", config)
    for i in range(10):
        log.append(gzip_batch([f"{i}a".encode(), f"{i}b".encode()], [b"k1", f"u{i}".encode()]))
    assert log.compact(now_ms=T0 * 2) > 0
    data = log.read(0, 1 << 20)
    keys: list[bytes | None] = []
    pos = 0
    while pos < len(data):
        header = HEADER.unpack_from(data, pos)
        batch = data[pos : pos + header[1] + 12]
        assert header[5] & 0x07 == 1
        assert crc32c(batch[21:]) == header[4]
        keys.extend(r.key for r in parse_records(batch) or ())
        pos += len(batch)
    assert 1 <= keys.count(b"k1") < 10
    assert {f"u{i}".encode() for i in range(10)} <= set(keys)


def test_compaction_keeps_transactional_batches(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=200, cleanup_policy=frozenset({"compact"}))
    log = PartitionLog.open(tmp_path / "p", config)
    for seq in range(5):
        log.append(
            make_batch(
                [b"v"],
                [b"same"],
                producer_id=3,
                producer_epoch=0,
                base_sequence=seq,
                attributes=ATTR_TRANSACTIONAL,
            )
        )
    log.append(make_batch([b"plain"], [b"same"]))
    assert log.compact(now_ms=T0 * 2) == 0
    assert len(read_all_records(log.read(0, 1 << 20))) == 6
