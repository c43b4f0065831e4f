"""Durable offset log of the group coordinator: replay, torn writes, compaction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from eventpro.broker.group_offsets import LOG_FILE_NAME, OffsetStore


def reopened(path: Path) -> OffsetStore:
    store = OffsetStore(path)
    store.open()
    return store


def test_commits_replay_in_order_and_compact_on_open(tmp_path: Path) -> None:
    store = reopened(tmp_path)
    store.commit("g", {("t", 0): (1, None)})
    store.commit("g", {("t", 0): (2, "m"), ("t", 1): (5, None)})
    store.commit("h", {("u", 0): (9, None)})
    lines_before = (tmp_path / LOG_FILE_NAME).read_bytes().count(b"\n")
    # no close(): a killed process leaves only the appended lines
    again = reopened(tmp_path)
    assert dict(again.offsets("g")) == {("t", 0): (2, "m"), ("t", 1): (5, None)}
    assert dict(again.offsets("h")) == {("u", 0): (9, None)}
    assert sorted(again.groups()) == ["g", "h"]
    assert lines_before == 3
    assert (tmp_path / LOG_FILE_NAME).read_bytes().count(b"\n") == 2  # one line per group
    again.close()
    store.close()


def test_torn_last_line_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = reopened(tmp_path)
    store.commit("g", {("t", 0): (3, None)})
    store.close()
    with open(tmp_path / LOG_FILE_NAME, "ab") as handle:
        handle.write(b'{"group": "g", "offsets": [["t", 0, 4')
    with caplog.at_level(logging.WARNING):
        again = reopened(tmp_path)
    assert dict(again.offsets("g")) == {("t", 0): (3, None)}
    assert "torn last line" in caplog.text
    again.commit("g", {("t", 0): (5, None)})
    again.close()
    assert dict(reopened(tmp_path).offsets("g")) == {("t", 0): (5, None)}


def test_unreadable_middle_line_is_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / LOG_FILE_NAME).write_bytes(
        b'{"group": "g", "offsets": [["t", 0, 1, null]]}\n'
        b"garbage\n"
        b'{"group": "g", "offsets": [["t", 1, 2, "x"]]}\n'
    )
    with caplog.at_level(logging.WARNING):
        store = reopened(tmp_path)
    assert dict(store.offsets("g")) == {("t", 0): (1, None), ("t", 1): (2, "x")}
    assert "unreadable line 2" in caplog.text
    store.close()


def test_file_is_compacted_while_running(tmp_path: Path) -> None:
    store = OffsetStore(tmp_path, compact_after_lines=10)
    store.open()
    for offset in range(100):
        store.commit("g", {("t", 0): (offset, None)})
    assert (tmp_path / LOG_FILE_NAME).read_bytes().count(b"\n") <= 12
    assert dict(reopened(tmp_path).offsets("g")) == {("t", 0): (99, None)}
    store.close()


def test_deleted_topic_stays_deleted_after_restart(tmp_path: Path) -> None:
    store = reopened(tmp_path)
    store.commit("g", {("gone", 0): (1, None), ("kept", 0): (2, None)})
    assert store.delete_topic("gone") == ["g"]
    assert store.delete_topic("never") == []
    assert dict(reopened(tmp_path).offsets("g")) == {("kept", 0): (2, None)}
    store.close()


def test_commit_after_close_fails_loudly(tmp_path: Path) -> None:
    store = reopened(tmp_path)
    store.close()
    with pytest.raises(OSError, match="closed"):
        store.commit("g", {("t", 0): (1, None)})
