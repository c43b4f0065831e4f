"""PartitionLog recovery: torn tails, corrupt batches, lost indexes, random appends and reopens."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.batches import make_batch, read_all_records

from eventpro.broker.log import LogConfig, PartitionLog

CONFIG = LogConfig(segment_bytes=1500, index_interval_bytes=128)


def fill(directory: Path, batches: int = 20, per_batch: int = 5) -> PartitionLog:
    log = PartitionLog.open(directory, CONFIG)
    for i in range(batches):
        log.append(make_batch([f"b{i}-r{j}".encode() for j in range(per_batch)]))
    return log


def last_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


def test_unclean_reopen_keeps_everything_written(tmp_path: Path) -> None:
    log = fill(tmp_path / "p")
    data = log.read(0, 1 << 22)
    reopened = PartitionLog.open(tmp_path / "p", CONFIG)
    assert reopened.end_offset == 100
    assert reopened.read(0, 1 << 22) == data


def test_torn_tail_is_truncated_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = fill(tmp_path / "p")
    before = read_all_records(log.read(0, 1 << 22))
    segment = last_segment(tmp_path / "p")
    os.truncate(segment, segment.stat().st_size - 7)
    with caplog.at_level(logging.WARNING, logger="eventpro.broker.log"):
        reopened = PartitionLog.open(tmp_path / "p", CONFIG)
    assert "Truncated" in caplog.text and segment.name in caplog.text
    assert reopened.end_offset == 95
    assert read_all_records(reopened.read(0, 1 << 22)) == before[:95]
    assert reopened.append(make_batch([b"again"])).base_offset == 95


def test_flipped_byte_in_last_batch_is_truncated(tmp_path: Path) -> None:
    log = fill(tmp_path / "p")
    before = read_all_records(log.read(0, 1 << 22))
    log.close()
    segment = last_segment(tmp_path / "p")
    raw = bytearray(segment.read_bytes())
    raw[-3] ^= 0x55
    segment.write_bytes(bytes(raw))
    (tmp_path / "p" / "state.json").unlink()
    reopened = PartitionLog.open(tmp_path / "p", CONFIG)
    assert reopened.end_offset == 95
    assert read_all_records(reopened.read(0, 1 << 22)) == before[:95]


def test_garbage_after_the_last_batch_is_truncated(tmp_path: Path) -> None:
    fill(tmp_path / "p")
    segment = last_segment(tmp_path / "p")
    with open(segment, "ab") as fh:
        fh.write(b"\x00" * 40)
    reopened = PartitionLog.open(tmp_path / "p", CONFIG)
    assert reopened.end_offset == 100
    assert len(read_all_records(reopened.read(0, 1 << 22))) == 100


def test_missing_indexes_are_rebuilt(tmp_path: Path) -> None:
    log = fill(tmp_path / "p", batches=60)
    data = log.read(0, 1 << 22)
    log.close()
    for index in (*(tmp_path / "p").glob("*.index"), *(tmp_path / "p").glob("*.timeindex")):
        index.unlink()
    reopened = PartitionLog.open(tmp_path / "p", CONFIG)
    assert reopened.end_offset == 300
    assert reopened.read(0, 1 << 22) == data
    assert read_all_records(reopened.read(257, 1))[0][0] == 255
    assert any((tmp_path / "p").glob("*.index"))


def test_stale_index_is_rebuilt(tmp_path: Path) -> None:
    log = fill(tmp_path / "p", batches=60)
    log.close()
    first_index = sorted((tmp_path / "p").glob("*.index"))[0]
    first_index.write_bytes(b"\x00\x00\x00\x05\x7f\xff\xff\xff")
    reopened = PartitionLog.open(tmp_path / "p", CONFIG)
    assert [o for o, _, _ in read_all_records(reopened.read(0, 1 << 22))] == list(range(300))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.lists(st.binary(max_size=60), min_size=1, max_size=8),
            st.sampled_from(["none", "close", "crash"]),
        ),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from([200, 700, 10_000]),
)
def test_random_appends_and_reopens_read_back_exactly(
    steps: list[tuple[list[bytes], str]], segment_bytes: int
) -> None:
    config = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=64)
    directory = Path(tempfile.mkdtemp())
    try:
        log = PartitionLog.open(directory, config)
        expected: list[bytes] = []
        for vals, action in steps:
            result = log.append(make_batch(vals))
            assert result.base_offset == len(expected)
            expected.extend(vals)
            if action == "close":
                log.close()
            if action != "none":
                log = PartitionLog.open(directory, config)
            assert log.end_offset == len(expected)
        records = read_all_records(log.read(0, 1 << 24))
        assert [o for o, _, _ in records] == list(range(len(expected)))
        assert [v for _, _, v in records] == expected
        offset = 0
        seen: list[bytes | None] = []
        while offset < log.end_offset:
            chunk = read_all_records(log.read(offset, 150))
            seen.extend(v for o, _, v in chunk if o >= offset)
            offset = chunk[-1][0] + 1
        assert seen == expected
        log.close()
    finally:
        shutil.rmtree(directory)
