"""PartitionLog transaction tracking: last stable offset, aborted index, read_committed reads,
recovery of both after clean and unclean restarts."""

from __future__ import annotations

from pathlib import Path

from support.batches import make_batch, read_all_records

from eventpro.broker.log import LogConfig, PartitionLog
from eventpro.broker.records import (
    ATTR_CONTROL,
    ATTR_TRANSACTIONAL,
    CONTROL_ABORT,
    CONTROL_COMMIT,
    HEADER,
    control_batch,
    control_type,
    validate_batches,
)
from eventpro.broker.txn_index import INDEX_FILE


def txn_batch(pid: int, seq: int, n: int = 2, epoch: int = 0) -> bytes:
    return make_batch(
        [f"p{pid}-{seq + i}".encode() for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        attributes=ATTR_TRANSACTIONAL,
    )


def marker(pid: int, *, commit: bool, epoch: int = 0) -> bytes:
    return control_batch(pid, epoch, commit=commit, timestamp_ms=1)


def test_control_batch_is_a_valid_one_record_transactional_control_batch() -> None:
    batch = control_batch(42, 3, commit=True, coordinator_epoch=7, timestamp_ms=5)
    [(_, header)] = validate_batches(batch)
    assert header[5] == ATTR_TRANSACTIONAL | ATTR_CONTROL
    assert (header[9], header[10], header[11], header[12]) == (42, 3, -1, 1)
    assert control_type(batch) == CONTROL_COMMIT
    assert control_type(control_batch(42, 3, commit=False)) == CONTROL_ABORT
    [(offset, key, value)] = read_all_records(batch)
    assert (offset, key, value) == (0, b"\0\0\0\1", b"\0\0\0\0\0\7")


def test_lso_stops_at_the_first_open_transaction_and_markers_take_one_offset(
    tmp_path: Path,
) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(make_batch([b"plain"]))  # 0
    log.append(txn_batch(7, 0))  # 1-2
    log.append(txn_batch(8, 0))  # 3-4
    assert (log.end_offset, log.last_stable_offset) == (5, 1)
    assert log.open_transactions == {7: 1, 8: 3}
    log.append(marker(7, commit=True))  # 5
    assert (log.end_offset, log.last_stable_offset) == (6, 3)
    log.append(marker(8, commit=False))  # 6
    assert (log.end_offset, log.last_stable_offset) == (7, 7)
    assert log.aborted_transactions(0, 7) == [(8, 3)]
    assert log.aborted_transactions(7, 100) == []
    assert log.aborted_transactions(0, 3) == []


def test_read_committed_read_stops_before_the_lso(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(make_batch([b"a", b"b"]))  # 0-1
    log.append(txn_batch(7, 0))  # 2-3 open
    log.append(make_batch([b"c"]))  # 4
    lso = log.last_stable_offset
    assert lso == 2
    assert [o for o, _, _ in read_all_records(log.read(0, 1 << 20, upper=lso))] == [0, 1]
    assert log.read(2, 1 << 20, upper=lso) == b""
    assert [o for o, _, _ in read_all_records(log.read(0, 1 << 20))] == [0, 1, 2, 3, 4]
    log.append(marker(7, commit=True))
    assert log.last_stable_offset == log.end_offset == 6
    assert [o for o, _, _ in read_all_records(log.read(2, 1 << 20, upper=6))] == [2, 3, 4, 5]


def test_marker_without_an_open_transaction_is_ignored(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(marker(9, commit=False))
    assert log.aborted_transactions(0, 10) == []
    assert log.last_stable_offset == log.end_offset == 1


def test_clean_restart_keeps_open_transactions_and_aborted_index(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(txn_batch(1, 0))  # 0-1
    log.append(marker(1, commit=False))  # 2
    log.append(txn_batch(2, 0))  # 3-4 stays open
    log.close()
    reopened = PartitionLog.open(tmp_path / "p", LogConfig())
    assert reopened.open_transactions == {2: 3}
    assert reopened.last_stable_offset == 3
    assert reopened.aborted_transactions(0, 10) == [(1, 0)]
    reopened.append(marker(2, commit=True, epoch=0))
    assert reopened.last_stable_offset == reopened.end_offset == 6


def test_unclean_restart_rebuilds_state_from_batches_without_duplicates(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(txn_batch(1, 0))  # 0-1
    log.append(marker(1, commit=False))  # 2
    log.append(txn_batch(2, 0))  # 3-4
    log.append(txn_batch(3, 0))  # 5-6
    log.append(marker(3, commit=False))  # 7
    # no close(): the state file still says "unclean", recovery point 0
    reopened = PartitionLog.open(tmp_path / "p", LogConfig())
    assert reopened.open_transactions == {2: 3}
    assert reopened.aborted_transactions(0, 100) == [(1, 0), (3, 5)]
    assert (tmp_path / "p" / INDEX_FILE).stat().st_size == 2 * 24


def test_lost_index_file_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(txn_batch(1, 0))
    log.append(marker(1, commit=False))
    log.append(txn_batch(1, 2))
    log.append(marker(1, commit=True))
    log.close()
    (tmp_path / "p" / INDEX_FILE).unlink()
    (tmp_path / "p" / "state.json").unlink()
    reopened = PartitionLog.open(tmp_path / "p", LogConfig())
    assert reopened.aborted_transactions(0, 100) == [(1, 0)]
    assert reopened.last_stable_offset == reopened.end_offset == 6


def test_truncation_rebuilds_transaction_state(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(txn_batch(1, 0))  # 0-1
    log.append(marker(1, commit=False))  # 2
    log.append(txn_batch(2, 0))  # 3-4
    log.append(marker(2, commit=True))  # 5
    log.truncate_to(5)
    assert log.open_transactions == {2: 3}
    assert log.last_stable_offset == 3
    log.truncate_to(2)
    assert log.open_transactions == {1: 0}
    assert log.aborted_transactions(0, 100) == []


def test_retention_drops_aborted_entries_before_the_log_start(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=200, retention_bytes=1)
    log = PartitionLog.open(tmp_path / "p", config)
    log.append(txn_batch(1, 0))
    log.append(marker(1, commit=False))
    for i in range(6):
        log.append(make_batch([f"filler-{i}".encode() * 10]))
    assert log.aborted_transactions(0, 100) == [(1, 0)]
    assert log.enforce_retention(now_ms=0) > 0
    assert log.log_start_offset > 2
    assert log.aborted_transactions(0, 100) == []


def test_control_batch_header_fields_survive_a_round_trip(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig())
    log.append(txn_batch(5, 0, epoch=2))
    log.append(marker(5, commit=True, epoch=2))
    data = log.read(2, 1 << 20)
    header = HEADER.unpack_from(data, 0)
    assert (header[0], header[5], header[9], header[10]) == (
        2,
        ATTR_TRANSACTIONAL | ATTR_CONTROL,
        5,
        2,
    )
