"""The transaction coordinator: Kafka transactions on one node (Faust's exactly_once mode).

A transactional id maps to a producer id and an epoch; every InitProducerId bumps the epoch, which
fences older instances and aborts the transaction they left open. Partitions and consumer groups
join the ongoing transaction (AddPartitionsToTxn, AddOffsetsToTxn); TxnOffsetCommit stages offsets
that become the group's committed offsets only when the transaction commits, even when it wrote no
records. EndTxn moves the transaction to Prepare* (persisted), writes a commit or abort marker to
every partition, applies the staged offsets on commit, and moves it to Complete* (persisted). A
restart finishes every prepared transaction, so markers and offsets always end up consistent.

All operations are synchronous (no awaits), so the event loop serialises them: the coordinator
never has to answer CONCURRENT_TRANSACTIONS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kio.schema.errors import ErrorCode

from eventpro.broker.errors import BrokerError, UnknownTopicError
from eventpro.broker.groups import GroupCoordinator
from eventpro.broker.producer_ids import ProducerIdManager
from eventpro.broker.records import control_batch
from eventpro.broker.topics_store import TopicsStore
from eventpro.broker.txn_store import TopicPartition, TxnEntry, TxnState, TxnStore

__all__ = ("InitResult", "TransactionConfig", "TransactionCoordinator", "TxnState")

logger = logging.getLogger(__name__)

StagedOffsets = Mapping[TopicPartition, tuple[int, str | None]]


@dataclass(frozen=True)
class TransactionConfig:
    """Coordinator limits and timing.

    :param max_timeout_ms: longest transaction timeout a producer may ask for (Kafka's
        ``transaction.max.timeout.ms``). Default - 15 minutes.
    :param check_interval_s: how often timed-out transactions are looked for. Default - 0.5 s.
    :param fsync: fsync the transaction log after every change. Default - ``False``.
    """

    max_timeout_ms: int = 15 * 60 * 1000
    check_interval_s: float = 0.5
    fsync: bool = False


@dataclass(frozen=True)
class InitResult:
    """InitProducerId answer."""

    error: ErrorCode
    producer_id: int = -1
    epoch: int = -1


def _wall_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    """Transactional ids, their producer epochs and their transactions.

    :param data_dir: directory of ``transactions.log``.
    :param on_markers: called after markers were written (wakes long-polling fetches).
    :param clock_ms: wall-clock milliseconds; injectable so tests can move time.
    """

    def __init__(
        self,
        data_dir: Path,
        topics: TopicsStore,
        groups: GroupCoordinator,
        producer_ids: ProducerIdManager,
        config: TransactionConfig | None = None,
        *,
        on_markers: Callable[[], None] | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.config = config or TransactionConfig()
        self._store = TxnStore(data_dir, fsync=self.config.fsync)
        self._topics = topics
        self._groups = groups
        self._producer_ids = producer_ids
        self._on_markers = on_markers
        self._clock_ms = clock_ms
        self._entries: dict[str, TxnEntry] = {}
        self._by_pid: dict[int, TxnEntry] = {}
        self._timer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def recover(self) -> None:
        """Load the transaction log, finish prepared transactions and abort orphans.

        Call after topics and group offsets are loaded.
        """
        self._entries = {e.transactional_id: e for e in self._store.open()}
        self._by_pid = {e.producer_id: e for e in self._entries.values()}
        prepared = [
            e
            for e in self._entries.values()
            if e.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
        ]
        for entry in prepared:
            logger.info(
                "completing transaction of %r left in %s by the last shutdown",
                entry.transactional_id,
                entry.state,
            )
            self._complete(entry)
        self._abort_orphans()
        ongoing = sum(1 for e in self._entries.values() if e.state is TxnState.ONGOING)
        logger.info(
            "loaded %d transactional id(s) from %s, %d transaction(s) ongoing",
            len(self._entries),
            self._store.path,
            ongoing,
        )

    async def start(self) -> None:
        """Recover and start the timer that aborts timed-out transactions."""
        self.recover()
        self._timer = asyncio.create_task(self._run_timer(), name="txn-timeouts")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        self._store.close()

    # ------------------------------------------------------------------ InitProducerId

    def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> InitResult:
        """Bump the epoch of ``transactional_id``; aborts the transaction an older instance left.

        ``producer_id``/``producer_epoch`` (v3+, KIP-360) must name the current epoch when given.
        """
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return InitResult(ErrorCode.invalid_transaction_timeout)
        entry = self._entries.get(transactional_id)
        if (
            entry is not None
            and producer_id >= 0
            and (producer_id, producer_epoch) != (entry.producer_id, entry.epoch)
        ):
            return InitResult(ErrorCode.producer_fenced)
        prepared = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
        if entry is not None and entry.state in prepared and not self._complete(entry):
            return InitResult(ErrorCode.concurrent_transactions)
        new_pid, new_epoch = self._producer_ids.for_transactional_id(transactional_id)
        if entry is None:
            entry = TxnEntry(transactional_id, new_pid, new_epoch, timeout_ms)
        else:
            if entry.state is TxnState.ONGOING:
                logger.info(
                    "aborting the open transaction of %r (epoch %d): a new instance initialised",
                    transactional_id,
                    entry.epoch,
                )
                self._fence_and_abort(entry, new_pid, new_epoch)
            self._by_pid.pop(entry.producer_id, None)
            entry.producer_id, entry.epoch = new_pid, new_epoch
            entry.timeout_ms = timeout_ms
        self._entries[transactional_id] = entry
        self._by_pid[new_pid] = entry
        self._save(entry)
        return InitResult(ErrorCode.none, new_pid, new_epoch)

    # ------------------------------------------------------------------ building a transaction

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: list[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """Add partitions to the ongoing transaction (starting it if needed)."""
        entry, error = self._current(transactional_id, producer_id, producer_epoch)
        if entry is None or error is not ErrorCode.none:
            return dict.fromkeys(partitions, error)
        if entry.state not in (TxnState.ONGOING, *_ENDED):
            return dict.fromkeys(partitions, ErrorCode.concurrent_transactions)
        unknown = [tp for tp in partitions if not self._partition_exists(tp)]
        if unknown:
            results = dict.fromkeys(partitions, ErrorCode.operation_not_attempted)
            results.update(dict.fromkeys(unknown, ErrorCode.unknown_topic_or_partition))
            return results
        self._begin(entry)
        entry.partitions.update(partitions)
        self._save(entry)
        return dict.fromkeys(partitions, ErrorCode.none)

    def add_offsets(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> ErrorCode:
        """Let the transaction stage offsets of ``group_id`` (AddOffsetsToTxn)."""
        entry, error = self._current(transactional_id, producer_id, producer_epoch)
        if entry is None or error is not ErrorCode.none:
            return error
        if not group_id:
            return ErrorCode.invalid_group_id
        if entry.state not in (TxnState.ONGOING, *_ENDED):
            return ErrorCode.concurrent_transactions
        self._begin(entry)
        entry.groups.add(group_id)
        self._save(entry)
        return ErrorCode.none

    def stage_offsets(
        self,
        transactional_id: str,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        offsets: StagedOffsets,
        *,
        generation_id: int = -1,
        member_id: str = "",
    ) -> dict[TopicPartition, ErrorCode]:
        """TxnOffsetCommit: stage offsets; the group sees them only if the transaction commits."""
        entry, error = self._current(transactional_id, producer_id, producer_epoch)
        if entry is not None and error is ErrorCode.none:
            if entry.state is not TxnState.ONGOING or group_id not in entry.groups:
                error = ErrorCode.invalid_txn_state
            elif generation_id >= 0 or member_id:
                error = self._groups.validate_member(group_id, generation_id, member_id)
        if error is not ErrorCode.none or entry is None:
            return dict.fromkeys(offsets, error)
        entry.offsets.setdefault(group_id, {}).update(offsets)
        self._save(entry)
        return dict.fromkeys(offsets, ErrorCode.none)

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> ErrorCode:
        """Commit or abort: markers on every partition, staged offsets applied on commit."""
        entry, error = self._current(transactional_id, producer_id, producer_epoch)
        if entry is None or error is not ErrorCode.none:
            return error
        state = entry.state
        wanted_prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        wanted_complete = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        if state is wanted_complete:
            return ErrorCode.none  # a retry of an EndTxn that already succeeded
        if state is TxnState.ONGOING:
            entry.state = wanted_prepare
            entry.marker_epoch = entry.epoch
            self._save(entry)
        elif state is not wanted_prepare:
            return ErrorCode.invalid_txn_state
        if not self._complete(entry):
            return ErrorCode.kafka_storage_error
        return ErrorCode.none

    # ------------------------------------------------------------------ queries

    def check_produce(self, producer_id: int, producer_epoch: int, tp: TopicPartition) -> ErrorCode:
        """Whether a transactional batch may be written to ``tp``."""
        entry = self._by_pid.get(producer_id)
        if entry is None:
            return ErrorCode.invalid_producer_id_mapping
        if producer_epoch != entry.epoch:
            return ErrorCode.invalid_producer_epoch
        if entry.state is not TxnState.ONGOING or tp not in entry.partitions:
            return ErrorCode.invalid_txn_state
        return ErrorCode.none

    def pending_offsets(self, group_id: str) -> set[TopicPartition]:
        """Partitions of ``group_id`` with offsets staged by a transaction not yet complete."""
        pending: set[TopicPartition] = set()
        for entry in self._entries.values():
            if entry.state.open:
                pending.update(entry.offsets.get(group_id, ()))
        return pending

    def entry(self, transactional_id: str) -> TxnEntry | None:
        """The coordinator's state of one transactional id (tests and tooling)."""
        return self._entries.get(transactional_id)

    # ------------------------------------------------------------------ timeouts

    def expire(self) -> list[str]:
        """Abort every transaction open longer than its timeout; returns their ids.

        The epoch is bumped first, as Kafka does, so the producer that went silent is fenced.
        Prepared transactions whose markers could not be written earlier are retried here.
        """
        now = self._clock_ms()
        aborted = []
        for entry in list(self._entries.values()):
            if entry.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                self._complete(entry)
            elif (
                entry.state is TxnState.ONGOING
                and entry.started_ms >= 0
                and now - entry.started_ms > entry.timeout_ms
            ):
                logger.warning(
                    "aborting the transaction of %r (producer %d epoch %d): open for %d ms, "
                    "longer than its %d ms timeout; the producer is fenced",
                    entry.transactional_id,
                    entry.producer_id,
                    entry.epoch,
                    now - entry.started_ms,
                    entry.timeout_ms,
                )
                new_pid, new_epoch = self._producer_ids.for_transactional_id(entry.transactional_id)
                self._fence_and_abort(entry, new_pid, new_epoch)
                self._by_pid.pop(entry.producer_id, None)
                entry.producer_id, entry.epoch = new_pid, new_epoch
                self._by_pid[new_pid] = entry
                self._save(entry)
                aborted.append(entry.transactional_id)
        return aborted

    async def _run_timer(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval_s)
            try:
                self.expire()
            except Exception:
                logger.exception("transaction timeout check failed; will retry")

    # ------------------------------------------------------------------ internals

    def _current(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> tuple[TxnEntry | None, ErrorCode]:
        entry = self._entries.get(transactional_id)
        if entry is None or entry.producer_id != producer_id:
            return None, ErrorCode.invalid_producer_id_mapping
        if producer_epoch != entry.epoch:
            return None, ErrorCode.producer_fenced
        return entry, ErrorCode.none

    def _begin(self, entry: TxnEntry) -> None:
        if entry.state is not TxnState.ONGOING:
            entry.clear(TxnState.ONGOING)
            entry.started_ms = self._clock_ms()

    def _partition_exists(self, tp: TopicPartition) -> bool:
        try:
            self._topics.log(*tp)
        except UnknownTopicError:
            return False
        return True

    def _fence_and_abort(self, entry: TxnEntry, new_pid: int, new_epoch: int) -> None:
        """Abort ``entry``'s ongoing transaction with markers stamped with the new epoch."""
        entry.state = TxnState.PREPARE_ABORT
        entry.marker_epoch = new_epoch if new_pid == entry.producer_id else entry.epoch
        self._save(entry)
        self._complete(entry)

    def _complete(self, entry: TxnEntry) -> bool:
        """Write the markers and apply offsets of a prepared transaction; False on failure."""
        commit = entry.state is TxnState.PREPARE_COMMIT
        epoch = entry.marker_epoch if entry.marker_epoch >= 0 else entry.epoch
        now = self._clock_ms()
        wrote = False
        for tp in sorted(entry.partitions):
            marker = control_batch(entry.producer_id, epoch, commit=commit, timestamp_ms=now)
            try:
                self._topics.log(*tp).append(marker, now_ms=now)
            except UnknownTopicError:
                logger.warning(
                    "transaction of %r: partition %s-%d no longer exists; no marker written",
                    entry.transactional_id,
                    *tp,
                )
            except BrokerError:
                logger.exception(
                    "transaction of %r: cannot write the %s marker to %s-%d; will retry",
                    entry.transactional_id,
                    "commit" if commit else "abort",
                    *tp,
                )
                return False
            entry.partitions.discard(tp)
            wrote = True
        if commit:
            for group_id, offsets in sorted(entry.offsets.items()):
                try:
                    self._groups.apply_transactional_offsets(group_id, offsets)
                except OSError:
                    logger.exception(
                        "transaction of %r: cannot persist committed offsets of group %s; "
                        "check the disk, the commit is retried",
                        entry.transactional_id,
                        group_id,
                    )
                    return False
        entry.clear(TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT)
        self._save(entry)
        if wrote and self._on_markers is not None:
            self._on_markers()
        return True

    def _abort_orphans(self) -> None:
        """Abort transactions open in a partition log that no transactional id accounts for."""
        owned = {
            (e.producer_id, tp)
            for e in self._entries.values()
            if e.state is TxnState.ONGOING
            for tp in e.partitions
        }
        now = self._clock_ms()
        for info in self._topics.topics():
            for index in range(info.partitions):
                log = self._topics.log(info.name, index)
                for pid in log.open_transactions:
                    if (pid, (info.name, index)) in owned:
                        continue
                    logger.warning(
                        "aborting an orphaned transaction of producer %d in %s-%d: no "
                        "transactional id owns it (transaction log lost or reset)",
                        pid,
                        info.name,
                        index,
                    )
                    marker = control_batch(
                        pid, max(log.producer_epoch(pid), 0), commit=False, timestamp_ms=now
                    )
                    log.append(marker, now_ms=now)

    def _save(self, entry: TxnEntry) -> None:
        self._store.save(entry)
        self._store.maybe_compact(self._entries.values(), len(self._entries))


_ENDED = (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
