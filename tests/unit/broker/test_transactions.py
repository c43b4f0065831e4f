"""TransactionCoordinator state machine: commit/abort markers, staged offsets, fencing, timeouts,
recovery of prepared and ongoing transactions after a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode
from support.batches import make_batch

from eventpro.broker.groups import GroupCoordinator
from eventpro.broker.producer_ids import ProducerIdManager
from eventpro.broker.records import ATTR_TRANSACTIONAL
from eventpro.broker.topics_store import TopicsStore
from eventpro.broker.transactions import TransactionCoordinator, TxnState
from eventpro.broker.txn_store import TxnStore

TID = "app-tx-0"
TIMEOUT_MS = 10_000
TOPIC = "out"
GROUP = "grp"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class Node:
    """The pieces of a broker the coordinator works with, on one data directory."""

    topics: TopicsStore
    groups: GroupCoordinator
    producer_ids: ProducerIdManager
    txns: TransactionCoordinator
    clock: Clock
    markers: list[int]

    async def close(self) -> None:
        await self.txns.close()
        await self.groups.close()
        self.topics.close()


async def open_node(data_dir: Path, clock: Clock | None = None) -> Node:
    topics = TopicsStore(data_dir / "topics")
    topics.load()
    if topics.topic(TOPIC) is None:
        topics.create_topic(TOPIC, 2)
    groups = GroupCoordinator(data_dir / "groups")
    await groups.start()
    producer_ids = ProducerIdManager(data_dir / "producer_ids.json")
    producer_ids.load()
    clock = clock or Clock()
    markers: list[int] = []
    txns = TransactionCoordinator(
        data_dir,
        topics,
        groups,
        producer_ids,
        on_markers=lambda: markers.append(1),
        clock_ms=clock,
    )
    txns.recover()
    return Node(topics, groups, producer_ids, txns, clock, markers)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = await open_node(tmp_path)
    try:
        yield n
    finally:
        await n.close()


def produce(node: Node, pid: int, epoch: int, partition: int, seq: int, n: int = 2) -> None:
    assert node.txns.check_produce(pid, epoch, (TOPIC, partition)) is ErrorCode.none
    node.topics.log(TOPIC, partition).append(
        make_batch(
            [b"x"] * n,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
            attributes=ATTR_TRANSACTIONAL,
        )
    )


def init(node: Node) -> tuple[int, int]:
    result = node.txns.init_producer_id(TID, TIMEOUT_MS)
    assert result.error is ErrorCode.none
    return result.producer_id, result.epoch


async def test_commit_writes_one_marker_per_partition_and_applies_staged_offsets(
    node: Node,
) -> None:
    pid, epoch = init(node)
    assert node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0), (TOPIC, 1)]) == {
        (TOPIC, 0): ErrorCode.none,
        (TOPIC, 1): ErrorCode.none,
    }
    produce(node, pid, epoch, 0, 0)
    produce(node, pid, epoch, 1, 0, n=3)
    assert node.txns.add_offsets(TID, pid, epoch, GROUP) is ErrorCode.none
    staged = node.txns.stage_offsets(TID, GROUP, pid, epoch, {("in", 0): (42, "m")})
    assert staged == {("in", 0): ErrorCode.none}
    assert node.txns.pending_offsets(GROUP) == {("in", 0)}
    assert node.groups.fetch_offsets(GROUP, [("in", 0)]) == {("in", 0): (-1, None)}
    p0 = node.topics.log(TOPIC, 0)
    assert p0.last_stable_offset == 0

    assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.none

    assert (p0.end_offset, p0.last_stable_offset) == (3, 3)
    p1 = node.topics.log(TOPIC, 1)
    assert (p1.end_offset, p1.last_stable_offset) == (4, 4)
    assert p0.aborted_transactions(0, 10) == []
    assert node.groups.fetch_offsets(GROUP, [("in", 0)]) == {("in", 0): (42, "m")}
    assert node.txns.pending_offsets(GROUP) == set()
    assert node.markers == [1]
    entry = node.txns.entry(TID)
    assert entry is not None and entry.state is TxnState.COMPLETE_COMMIT
    # a retried EndTxn(commit) succeeds again without writing anything
    assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.none
    assert p0.end_offset == 3
    assert node.txns.end_txn(TID, pid, epoch, commit=False) is ErrorCode.invalid_txn_state


async def test_abort_writes_abort_markers_and_drops_staged_offsets(node: Node) -> None:
    pid, epoch = init(node)
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    produce(node, pid, epoch, 0, 0)
    node.txns.add_offsets(TID, pid, epoch, GROUP)
    node.txns.stage_offsets(TID, GROUP, pid, epoch, {("in", 1): (9, None)})
    assert node.txns.end_txn(TID, pid, epoch, commit=False) is ErrorCode.none
    p0 = node.topics.log(TOPIC, 0)
    assert (p0.end_offset, p0.last_stable_offset) == (3, 3)
    assert p0.aborted_transactions(0, 3) == [(pid, 0)]
    assert node.groups.fetch_offsets(GROUP, [("in", 1)]) == {("in", 1): (-1, None)}
    # the next transaction of the same producer continues its sequence numbers
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    produce(node, pid, epoch, 0, 2)
    assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.none
    assert p0.end_offset == 6


async def test_offsets_only_transaction_commits_its_offsets(node: Node) -> None:
    pid, epoch = init(node)
    assert node.txns.add_offsets(TID, pid, epoch, GROUP) is ErrorCode.none
    node.txns.stage_offsets(TID, GROUP, pid, epoch, {("in", 0): (7, None), ("in", 1): (9, None)})
    assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.none
    assert node.groups.fetch_offsets(GROUP, None) == {("in", 0): (7, None), ("in", 1): (9, None)}
    assert node.topics.log(TOPIC, 0).end_offset == 0  # no partitions, no markers


async def test_end_txn_without_a_transaction_is_invalid(node: Node) -> None:
    pid, epoch = init(node)
    assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.invalid_txn_state


async def test_offsets_need_add_offsets_first(node: Node) -> None:
    pid, epoch = init(node)
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    errors = node.txns.stage_offsets(TID, GROUP, pid, epoch, {("in", 0): (1, None)})
    assert errors == {("in", 0): ErrorCode.invalid_txn_state}


async def test_reinit_fences_the_old_epoch_and_aborts_its_transaction(node: Node) -> None:
    pid, epoch = init(node)
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    produce(node, pid, epoch, 0, 0)
    p0 = node.topics.log(TOPIC, 0)
    assert p0.last_stable_offset == 0

    pid2, epoch2 = init(node)

    assert (pid2, epoch2) == (pid, epoch + 1)
    assert p0.last_stable_offset == p0.end_offset == 3
    assert p0.aborted_transactions(0, 3) == [(pid, 0)]
    old = (TID, pid, epoch)
    assert node.txns.add_partitions(*old, [(TOPIC, 1)]) == {(TOPIC, 1): ErrorCode.producer_fenced}
    assert node.txns.add_offsets(*old, GROUP) is ErrorCode.producer_fenced
    assert node.txns.end_txn(*old, commit=True) is ErrorCode.producer_fenced
    assert node.txns.check_produce(pid, epoch, (TOPIC, 0)) is ErrorCode.invalid_producer_epoch
    # the new instance starts over at sequence 0
    node.txns.add_partitions(TID, pid2, epoch2, [(TOPIC, 0)])
    produce(node, pid2, epoch2, 0, 0)
    assert node.txns.end_txn(TID, pid2, epoch2, commit=True) is ErrorCode.none


async def test_kip360_init_with_a_stale_epoch_is_fenced(node: Node) -> None:
    pid, epoch = init(node)
    init(node)
    stale = node.txns.init_producer_id(TID, TIMEOUT_MS, pid, epoch)
    assert stale.error is ErrorCode.producer_fenced
    current = node.txns.entry(TID)
    assert current is not None
    ok = node.txns.init_producer_id(TID, TIMEOUT_MS, current.producer_id, current.epoch)
    assert (ok.error, ok.epoch) == (ErrorCode.none, epoch + 2)


async def test_produce_outside_the_transaction_is_refused(node: Node) -> None:
    pid, epoch = init(node)
    assert node.txns.check_produce(pid, epoch, (TOPIC, 0)) is ErrorCode.invalid_txn_state
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    assert node.txns.check_produce(pid, epoch, (TOPIC, 1)) is ErrorCode.invalid_txn_state
    assert node.txns.check_produce(pid + 1000, 0, (TOPIC, 0)) is (
        ErrorCode.invalid_producer_id_mapping
    )


async def test_unknown_partition_is_reported_and_others_not_attempted(node: Node) -> None:
    pid, epoch = init(node)
    result = node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0), ("nope", 0)])
    assert result == {
        (TOPIC, 0): ErrorCode.operation_not_attempted,
        ("nope", 0): ErrorCode.unknown_topic_or_partition,
    }


async def test_timeout_must_be_positive_and_bounded(node: Node) -> None:
    assert node.txns.init_producer_id(TID, 0).error is ErrorCode.invalid_transaction_timeout
    too_long = node.txns.config.max_timeout_ms + 1
    assert node.txns.init_producer_id(TID, too_long).error is (
        ErrorCode.invalid_transaction_timeout
    )


async def test_timed_out_transaction_is_aborted_and_its_producer_fenced(node: Node) -> None:
    pid, epoch = init(node)
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    produce(node, pid, epoch, 0, 0)
    node.clock.now += TIMEOUT_MS
    assert node.txns.expire() == []
    node.clock.now += 1
    assert node.txns.expire() == [TID]
    p0 = node.topics.log(TOPIC, 0)
    assert p0.last_stable_offset == p0.end_offset == 3
    assert p0.aborted_transactions(0, 3) == [(pid, 0)]
    assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.producer_fenced
    assert node.txns.check_produce(pid, epoch, (TOPIC, 0)) is ErrorCode.invalid_producer_epoch


async def test_ongoing_transaction_survives_a_restart_and_can_commit(tmp_path: Path) -> None:
    node = await open_node(tmp_path)
    pid, epoch = init(node)
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 1)])
    produce(node, pid, epoch, 1, 0)
    node.txns.add_offsets(TID, pid, epoch, GROUP)
    node.txns.stage_offsets(TID, GROUP, pid, epoch, {("in", 0): (5, None)})
    await node.close()

    node = await open_node(tmp_path)
    try:
        assert node.topics.log(TOPIC, 1).last_stable_offset == 0
        assert node.txns.pending_offsets(GROUP) == {("in", 0)}
        assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.none
        assert node.groups.fetch_offsets(GROUP, None) == {("in", 0): (5, None)}
        assert node.topics.log(TOPIC, 1).last_stable_offset == 3
    finally:
        await node.close()


async def test_prepared_commit_is_completed_on_restart(tmp_path: Path) -> None:
    node = await open_node(tmp_path)
    pid, epoch = init(node)
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    produce(node, pid, epoch, 0, 0)
    node.txns.add_offsets(TID, pid, epoch, GROUP)
    node.txns.stage_offsets(TID, GROUP, pid, epoch, {("in", 0): (11, None)})
    await node.close()
    # a crash right after the PrepareCommit line was persisted, before any marker
    store = TxnStore(tmp_path)
    [entry] = store.open()
    entry.state = TxnState.PREPARE_COMMIT
    entry.marker_epoch = epoch
    store.save(entry)
    store.close()

    node = await open_node(tmp_path)
    try:
        p0 = node.topics.log(TOPIC, 0)
        assert (p0.end_offset, p0.last_stable_offset) == (3, 3)
        assert p0.aborted_transactions(0, 3) == []
        assert node.groups.fetch_offsets(GROUP, None) == {("in", 0): (11, None)}
        restored = node.txns.entry(TID)
        assert restored is not None and restored.state is TxnState.COMPLETE_COMMIT
        assert node.txns.end_txn(TID, pid, epoch, commit=True) is ErrorCode.none
    finally:
        await node.close()


async def test_orphaned_open_transaction_is_aborted_on_start(tmp_path: Path) -> None:
    node = await open_node(tmp_path)
    pid, epoch = init(node)
    node.txns.add_partitions(TID, pid, epoch, [(TOPIC, 0)])
    produce(node, pid, epoch, 0, 0)
    await node.close()
    (tmp_path / "transactions.log").unlink()

    node = await open_node(tmp_path)
    try:
        p0 = node.topics.log(TOPIC, 0)
        assert p0.last_stable_offset == p0.end_offset == 3
        assert p0.aborted_transactions(0, 3) == [(pid, 0)]
    finally:
        await node.close()
