"""Faust's Kafka transport, with the fixes that EventPro's durability promise needs.

1. A producer buffer whose ``flush`` really waits. Table writes go to their changelog through
   Faust's ``ProducerBuffer``; Faust flushes the producer before it commits source offsets, but
   ``ProducerBuffer.flush`` returns as soon as no record left the buffer for 0.1 s (a broker
   restarting, a metadata wait), and a record being handed to the client is not counted at all.
   Offsets were then committed for records whose changelog writes were still in memory, and a
   SIGKILL lost them: a table write or outcome gone while its input counted as done.
   :class:`EventProProducerBuffer` waits until every buffered record reached the client, whose
   own ``flush`` then waits for the broker's acknowledgement.

2. Exactly-once commits only between records (:mod:`eventpro.commit_gate`).

3. A bounded wait for in-flight records and for the commits during a rebalance or shutdown.

4. Never committing past a record that was not acknowledged. Faust's ``_new_offset`` commits
   the run of acknowledged offsets that starts at the lowest one, checking only for a head
   gap of *more* than one record after a non-zero committed offset: with the record at the
   committed offset itself unacknowledged (or nothing committed yet) it commits past it, and
   that record is never processed (seen: a request whose batch was interrupted by a rebalance
   had no outcome at all, its offset committed). :meth:`EventProConsumer._new_offset` commits
   only a run that starts exactly at the next uncommitted offset, and partitions without a
   committed offset are read from their beginning (:meth:`EventProConsumer.perform_seek`).

5. Records Faust's streams skip are not acknowledged. While flow control is suspended (a
   rebalance) or for a record of an older consumer generation, ``Stream`` skips the record
   and acks it unprocessed; the revocation's commit then committed past records no agent had
   processed (seen: notifications never sent for outcomes queued when the broker restarted).
   :meth:`EventProConsumer.ack` drops such acks and notes the record as unprocessed, like
   the records of a batch an agent gave up (:meth:`EventProConsumer.note_unprocessed`).

6. A partition whose next record will not be acknowledged is read again from there. Waiting
   for the next rebalance left such a record undecided for good when no rebalance came (seen:
   a request skipped right after a restart never got an outcome, and under exactly_once the
   partition's transaction never committed, timed out and fenced the worker). When the head
   of a partition's commits is blocked and nothing below the first acknowledged record is in
   flight, :meth:`EventProConsumer._new_offset` seeks the partition back to the head, unless
   the first record read after each of the last two seeks to the head, the same one, proves
   the offsets in between hold no record a stream will see (transaction markers, aborted
   transactions under read_committed; Faust's gap tracking misses those at the head): then
   it commits past them. Records a fetch returned from before a seek are not delivered
   (:meth:`EventProConsumer.getmany`): Faust let them move the read offset past the records
   the seek fetched again, and dropped those.
   Records of a fetch that Faust's own ``getmany`` drops (the flow stopped, a new generation)
   count as given up (:meth:`EventProConsumer._note_undelivered`). Records given up at or past
   the last seek's offset free the partition for another seek
   (:meth:`EventProConsumer._give_up_probe`): they may be the very ones that seek was for.

7. Exactly once, transactions that hold records but no offsets are committed too. Faust puts
   a record in the transaction of its *destination* partition and commits a transaction only
   with consumed offsets of that partition: the hold-expiry ticks sent to a partition with no
   other input stayed in a transaction no reader could see, so no offset ever came to commit
   it; the broker aborted it after its timeout and fenced the worker (seen: a worker whose
   events all hashed to two of four partitions stopped after 60 s).
   :meth:`EventProConsumer._commit_idle_transactions` commits them with each commit.

8. A partition with records past its commit point, none of which a stream took for
   :data:`STALLED_READ_S` seconds, is read again from the commit point (resumed first if
   Faust left it paused). Items 5 and 6 need an acknowledged or given-up record to notice a
   loss; records Faust never delivered at all left a partition undecided for good (seen: in
   a chaos run three request partitions stopped after a broker restart, with no warning,
   while every other partition went on). :meth:`EventProConsumer._read_stalled_again`.

9. A worker whose membership is in doubt holds its batches. Heartbeats run in the consumer's
   thread; a worker whose heartbeats stopped getting through went on processing the records it
   had fetched, for partitions the group may have given to another worker meanwhile.
   :class:`EventProConsumerThread` confirms :data:`eventpro.membership.group_lease` with every
   heartbeat the coordinator accepts; see :mod:`eventpro.membership`.

10. Records go from the fetch loop to the streams without four tasks each. Faust's
   ``_drain_messages`` hands every record over as ``wait_first(callback(message),
   suspend_flow.wait())``; :meth:`EventProConsumer._drain_messages` runs the callback inline
   (:func:`eventpro.inline.start_inline`) and falls back to ``wait_first`` only for a callback
   that really waits, or while the flow is suspended. It halved Faust's CPU per record.

11. Records fetched for a fetch loop that was stopped are read again. Faust stops its fetch
   loop when partitions are revoked; a fetch the consumer thread had started goes on, waits
   for the new assignment and returns its first records to nobody, past which the client's
   position has moved. :meth:`EventProConsumer._note_abandoned_fetch` notes them given up.

12. Records queued for the streams when flow control resumes are read again. A resume empties
   every stream's queue, and Faust's recovery resumes the flow a second time after seeking
   the stream partitions with the flow already active: the records fetched during the seek
   were thrown away. :class:`DiscardNotingFlowControl` hands them to
   :meth:`EventProConsumer._note_discarded`, which notes them given up.

When partitions are revoked, Faust waits (``Consumer.wait_empty``) until every record that
started processing is acknowledged, with no time limit. After a broker restart a record can
stay referenced but unacknowledged although every agent is idle (Faust issue #133 and
robinhood/faust#402); the worker then never rejoins the group, ignores SIGTERM and its
partitions stay unprocessed. :class:`EventProConsumer` waits at most
:func:`wait_empty_limit` seconds and then goes on: a record that was not acknowledged was not
committed either, so the partition's next owner processes it again, and every handler is
idempotent (DESIGN.md "Delivery semantics").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, cast

import aiokafka
from aiokafka.errors import ProducerFenced
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message
from faust.types.tuples import FutureMessage
from mode import Service, ServiceT
from mode.utils.futures import notify
from mode.utils.queues import FlowControlEvent

from eventpro.commit_gate import GateTimeout, commit_gate
from eventpro.inline import start_inline
from eventpro.membership import group_lease

__all__ = (
    "DiscardNotingFlowControl",
    "EventProConsumer",
    "EventProProducer",
    "EventProProducerBuffer",
    "EventProTransport",
    "wait_empty_limit",
)

logger = logging.getLogger(__name__)

BLOCKED_HEAD_WARN_S = 30.0
"""How long a partition's commits may wait on one unacknowledged record before a warning."""

STALLED_READ_S = 15.0
"""How long records may wait past a partition's commit point, none taken by a stream, before
the partition is read again from there."""

END_OFFSETS_TIMEOUT_S = 5.0
"""How long a commit waits for the end offsets of partitions that look stalled."""

DRAIN_YIELD_EVERY = 100
"""Records the fetch loop hands over before it lets other tasks run (as Faust's loop)."""

WAIT_EMPTY_SHARE = 0.25
"""Share of the rebalance timeout a revoking worker waits for in-flight records."""


def wait_empty_limit(rebalance_timeout_s: float) -> float:
    """Seconds to wait for in-flight records: well inside the group's rebalance timeout."""
    return max(1.0, rebalance_timeout_s * WAIT_EMPTY_SHARE)


class EventProConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer: gated exactly-once commits, a bounded ``wait_empty``."""

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return EventProConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unprocessed: dict[TP, set[int]] = {}
        """Per partition, the offsets of records given up unprocessed (never a range: the
        offsets in between may hold transaction markers, which no read ever brings)."""
        self._rereading: set[TP] = set()
        """Partitions being sought back to their commit point."""
        self._seek_tasks: set[asyncio.Task[None]] = set()
        self._seek_epoch: dict[TP, int] = {}
        """Per stream partition, how many seeks completed: a fetch that began before the
        last one may return records from before it."""
        self._probes: dict[TP, int] = {}
        """Stream partitions sought to an offset whose first record was not read yet."""
        self._no_records: dict[TP, tuple[int, int]] = {}
        """Per stream partition, ``[start, end)``: the first record read after seeking to
        ``start`` was ``end`` after this seek and the one before, so offsets in between hold
        no record a stream will see."""
        self._holes: dict[TP, tuple[int, int]] = {}
        """Per stream partition, ``[start, end)``: the first record read after seeking to
        ``start`` was ``end`` once; a proof only when the next read from ``start`` agrees."""
        self._idle_since: dict[TP, tuple[int, float]] = {}
        """Per stream partition with nothing taken or done, its commit point and since when."""
        self._stall_reads: dict[TP, tuple[int, int]] = {}
        """Per stream partition, the offsets ``[start, end)`` last read again for a stall."""
        self._fetched: Any = None
        """The records of the fetch being handed over (:meth:`_note_undelivered`)."""
        flow_control = self.app.flow_control
        if isinstance(flow_control, DiscardNotingFlowControl):
            flow_control.on_discard = self._note_discarded

    async def commit(
        self, topics: set[str | TP] | None = None, start_new_transaction: bool = True
    ) -> bool:
        """Commit; in a transaction only while no record is half processed.

        Records still in progress after :func:`wait_empty_limit` seconds mean no commit this
        time (it is retried at the next commit interval), never a split transaction.
        """
        self._sweep_unprocessed()
        await self._read_stalled_again()
        if not self.app.in_transaction:
            return await super().commit(topics, start_new_transaction=start_new_transaction)
        limit = wait_empty_limit(float(self.app.conf.broker_rebalance_timeout))
        try:
            async with commit_gate.closed(limit):
                # Faust flushes the producer before a plain commit but not before a
                # transaction's: table writes still in the buffer would land in the next
                # transaction, and a crash would lose them while their input stays committed.
                await self.app.producer.flush()
                committed = await super().commit(
                    topics, start_new_transaction=start_new_transaction
                )
                await self._commit_idle_transactions(start_new_transaction)
                return committed
        except GateTimeout as exc:
            logger.warning("exactly-once commit postponed: %s", exc)
            return False

    async def _commit_idle_transactions(self, start_new_transaction: bool) -> None:
        """Commit every open transaction that holds records; Faust commits only those with
        offsets to commit (those it just committed are empty now and skipped)."""
        producer = self.app.producer
        producers: dict[str, Any] = getattr(producer, "_transaction_producers", {})
        locks: dict[str, asyncio.Lock] = getattr(producer, "_trn_locks", {})
        for transactional_id, txn_producer in list(producers.items()):
            manager = txn_producer._txn_manager
            if not (manager.txn_partitions or manager.partitions_to_add()):
                continue
            async with locks[transactional_id]:
                if producers.get(transactional_id) is not txn_producer:
                    continue  # replaced meanwhile (fenced, or a rebalance)
                if not manager.is_in_transaction():
                    continue
                try:
                    await txn_producer.commit_transaction()
                    if start_new_transaction:
                        await txn_producer.begin_transaction()
                except ProducerFenced as exc:
                    logger.warning("transaction %s fenced: %r", transactional_id, exc)
                    await self.app.crash(exc)
                    return

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's fetch loop (read offsets, gaps, ``commit_every``), each record handed to
        the conductor inline (docstring item 10)."""
        callback = self.callback
        suspend_flow = self.suspend_flow
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                # closed on the spot even when cancelled: it notes what Faust dropped
                async with contextlib.aclosing(self.getmany(timeout=1.0)) as records:
                    await self.sleep(0)  # getmany may return at once, again and again
                    if self.should_stop:
                        continue
                    async for tp, message in records:
                        since_yield += 1
                        if since_yield > DRAIN_YIELD_EVERY:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        read = read_offsets[tp]
                        if read is not None and offset < read:
                            continue  # read before (a seek went back): Faust drops it too
                        if read and offset - read > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, read + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if suspend_flow.is_set():
                            await self.wait_first(callback(message), suspend_flow.wait())
                        else:
                            rest = start_inline(callback(message))
                            if rest is not None:
                                await self.wait_first(rest, suspend_flow.wait())
                        read_offsets[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.app.should_stop:
                raise
            logger.info("the broker stopped the consumer; shutting down")
        except asyncio.CancelledError:
            if not self.app.should_stop:
                raise
        except Exception:
            logger.exception("the fetch loop failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def ack(self, message: Message) -> bool:
        """Faust's ack, except for records a stream skipped without processing them.

        They are marked done (nothing waits for them) but never counted as committable.
        """
        app = self.app
        if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                notify(self._waiting_for_ack)
                self.note_unprocessed(message)
            return False
        return super().ack(message)

    def note_unprocessed(self, message: Message) -> None:
        """``message`` was given up unprocessed: its partition is read again from the commit
        point, without waiting for a rebalance (see :meth:`_new_offset`)."""
        self._note_unprocessed(message.tp, [int(message.offset)])

    def _note_unprocessed(self, tp: TP, offsets: Iterable[int]) -> None:
        """The records of ``tp`` at ``offsets`` were given up unprocessed."""
        if tp.topic in self.app.tables.changelog_topics:
            return  # table recovery reads changelogs; they are never sought back here
        self._unprocessed.setdefault(tp, set()).update(offsets)

    def _given_up_in(self, tp: TP, start: int, end: int) -> list[int]:
        """The offsets in ``[start, end)`` of records of ``tp`` given up unprocessed."""
        return sorted(o for o in self._unprocessed.get(tp, ()) if start <= o < end)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's gap between two records read: the offsets ``offset_from..offset_to - 1``
        hold no record and count as acknowledged.

        Faust's own gap takes in ``offset_to`` too, the record just read: given up later, it
        still counted as acknowledged and was committed past.
        """
        await super()._add_gap(tp, offset_from, offset_to - 1)

    async def perform_seek(self) -> None:
        """Seek to the committed offsets, and partitions with none to their beginning.

        Faust resumes fetching before it seeks, and records fetched meanwhile are dropped
        when flow control resumes; a partition with a committed offset is sought back to it,
        but one without (or at 0) was not sought at all, so those records were skipped (seen:
        captures never applied). Seeking it to its first offset reads them again.
        """
        await super().perform_seek()
        self.start_offsets: dict[TP, int] = {}
        acked_topic = self.app.topics.acks_enabled_for  # stream topics, not changelogs
        streams = [tp for tp in self.assignment() if acked_topic(tp.topic)]
        fresh = [tp for tp in streams if self._committed_offset[tp] is None]
        if fresh:
            for tp, beginning in (await self.earliest_offsets(*fresh)).items():
                await self.seek(tp, beginning)
                self.start_offsets[tp] = beginning
        changelogs = self.app.tables.changelog_topics  # table recovery seeks those itself
        for tp in streams:
            if tp.topic not in changelogs:
                self._sought(tp, self._next_uncommitted(tp))

    def _sought(self, tp: TP, offset: int | None) -> None:
        """``tp`` was sought to ``offset``: records fetched before are stale from now on.

        Faust's read offset is cleared too: a stale record delivered since the seek may have
        moved it past the records the seek fetches again, which Faust would drop.
        """
        self._seek_epoch[tp] = self._seek_epoch.get(tp, 0) + 1
        self._read_offset.pop(tp, None)
        self._no_records.pop(tp, None)
        if offset is None:
            self._probes.pop(tp, None)
        else:
            self._probes[tp] = offset

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109
        """Faust's fetch loop, without records of a partition sought since the fetch returned.

        Faust delivers a fetched batch record by record while a seek may happen: the stale
        records after it moved the partition's read offset past the records the seek fetches
        again, and Faust dropped those as already read (seen: 18 requests never decided after
        a restart). Stale records are noted unprocessed instead (read again if need be).

        The first record read after a seek also tells which offsets before it hold none, but
        only from a fetch asked for after the seek: Faust seeks from the event loop while the
        consumer thread may be computing a fetch from the old position, whose records then
        arrive after the seek and look fresh (seen: nine requests fetched before a rebalance
        were committed past, never decided). Such a fetch counts only if it starts exactly at
        the seek's offset; otherwise its records are noted unprocessed and read again.
        """
        asked = dict(self._seek_epoch)
        doubtful: set[TP] = set()
        epochs: dict[TP, int] | None = None
        handed: dict[TP, int] = {}
        self._fetched = None
        try:
            async for tp, message in super().getmany(timeout):
                handed[tp] = message.offset
                if epochs is None:  # the fetch just returned: later seeks make it stale
                    epochs = dict(self._seek_epoch)
                epoch = self._seek_epoch.get(tp)
                if epoch is not None:
                    if epoch != epochs.get(tp) or tp in doubtful:
                        self.note_unprocessed(message)
                        self._give_up_probe(tp, message.offset)
                        continue
                    probe = self._probes.get(tp)
                    if probe is not None and message.offset >= probe:
                        if message.offset > probe and asked.get(tp) != epoch:
                            del self._probes[tp]  # nothing proven: free to read it again
                            doubtful.add(tp)
                            self.note_unprocessed(message)
                            continue
                        del self._probes[tp]
                        if message.offset > probe:
                            self._saw_hole(tp, probe, message.offset)
                        else:
                            self._holes.pop(tp, None)  # a record where the hole began
                        self._report_stall(tp, message.offset)
                yield tp, message
        finally:
            self._note_undelivered(handed)

    def _note_discarded(self, messages: list[Message]) -> None:
        """Faust threw away records handed to the streams (item 12 of the module docstring)."""
        streams = self.app.topics.acks_enabled_for
        discarded: dict[TP, list[Message]] = {}
        for message in sorted(messages, key=lambda m: m.offset):
            if not message.acked and streams(message.topic):
                discarded.setdefault(message.tp, []).append(message)
        for tp, queued in discarded.items():
            logger.info(
                "flow control resumed with %s[%d] %d..%d queued for the streams, which Faust "
                "drops: read again",
                tp.topic,
                tp.partition,
                queued[0].offset,
                queued[-1].offset,
            )
        self._give_up_fetched(discarded, {})

    def _give_up_probe(self, tp: TP, offset: int) -> None:
        """Record ``offset`` of ``tp``, at or past the last seek's offset, was given up unread:
        the first record after that seek may never come, so a commit may seek again.

        The seek is noted once the client did it, and the client may have fetched from the
        new position meanwhile: those records, the very ones the seek was for, look stale
        and are given up, and none comes after them (seen: two seeks back to the commit
        point right after a broker restart, 28..35 waited 21 s for the stall check).
        """
        probe = self._probes.get(tp)
        if probe is not None and offset >= probe:
            del self._probes[tp]

    def _saw_hole(self, tp: TP, start: int, end: int) -> None:
        """The first record read after seeking ``tp`` to ``start`` is ``end``.

        Proof that ``[start, end)`` holds no record only when the read before agrees: under
        at-least-once every offset holds a record, yet chaos runs saw such holes several times
        a run (records read by a fetch racing the seek); one of them, unnoted, was committed
        past. Transaction markers give the same hole on every read, so they cost one more.
        """
        hole = (start, end)
        if self._holes.get(tp) == hole:
            self._no_records[tp] = hole
        else:
            self._holes[tp] = hole

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:  # noqa: ASYNC109
        """Faust's fetch from the consumer thread; records of a fetch whose caller was
        cancelled are given up (item 11 of the module docstring)."""
        fetch = asyncio.ensure_future(super()._getmany(active_partitions, timeout))
        try:
            return await asyncio.shield(fetch)
        except asyncio.CancelledError:
            fetch.add_done_callback(self._note_abandoned_fetch)
            raise

    def _note_abandoned_fetch(self, fetch: asyncio.Future[Any]) -> None:
        """The records a fetch returned after its caller, the fetch loop, was stopped.

        Faust stops the fetch loop when partitions are revoked, but the consumer thread goes
        on with a fetch it already started (Faust's own ``_fetch_records`` notes the race):
        the client waits for the new assignment and returns its first records to a caller
        that is gone, past which its position has moved; only the stall check would read
        them again. Chaos runs showed such fetches at shutdown only, where they are ignored.
        """
        if fetch.cancelled() or fetch.exception() is not None or self.app.should_stop:
            return  # shutting down: nothing is committed after the fetch loop stopped
        fetched = fetch.result() or {}
        changelogs = self.app.tables.changelog_topics
        for tp, records in fetched.items():
            if records:
                changelog = tp.topic in changelogs  # table recovery seeks those itself
                logger.log(
                    logging.WARNING if changelog else logging.INFO,
                    "a fetch returned %s[%d] %d..%d after the fetch loop stopped%s",
                    tp.topic,
                    tp.partition,
                    records[0].offset,
                    records[-1].offset,
                    "" if changelog else "; read again",
                )
        self._give_up_fetched(fetched, {})

    async def _wait_next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:  # noqa: ASYNC109
        """Faust's wait for the next fetch; its records are kept for :meth:`_note_undelivered`."""
        records, active = await super()._wait_next_records(timeout)
        self._fetched = records
        return records, active

    def _note_undelivered(self, handed: dict[TP, int]) -> None:
        """Records of the last fetch that Faust's ``getmany`` never handed over are given up.

        Faust drops the rest of a fetch when flow control stops or the generation changes
        mid-batch, and all of it when the flow stopped before (its seek back to the committed
        offsets can fail: a broker just restarted). Unnoted, those records were invisible: the
        next record read passed for the first one after the last seek, or Faust's gap tracking
        counted their offsets as acknowledged, and they were committed past (seen: nine
        requests never decided after a restart).
        ``handed`` has, per partition, the offset of the last record handed over.
        """
        fetched, self._fetched = self._fetched, None
        if fetched:
            self._give_up_fetched(fetched, handed)

    def _give_up_fetched(self, fetched: Any, handed: dict[TP, int]) -> None:
        """The records of ``fetched`` (per partition, in offset order) after the last one
        handed over (``handed``, per partition) are given up."""
        for tp, records in fetched.items():
            if not records:
                continue
            after = handed.get(tp)
            if after is not None and after >= records[-1].offset:
                continue
            dropped = [int(r.offset) for r in records if after is None or r.offset > after]
            tp = TP(tp.topic, tp.partition)
            self._note_unprocessed(tp, dropped)
            self._give_up_probe(tp, dropped[-1])  # no record of the last seek may come

    def _report_stall(self, tp: TP, offset: int) -> None:
        """Warn when reading a stalled partition again brought a record (not only markers)."""
        stalled = self._stall_reads.pop(tp, None)
        if stalled is not None and offset < stalled[1]:
            logger.warning(
                "%s[%d] had stalled: offsets %d..%d were not taken by a stream for %.0fs; "
                "read again, record %d is being processed now",
                tp.topic,
                tp.partition,
                stalled[0],
                stalled[1] - 1,
                STALLED_READ_S,
                offset,
            )

    def _next_uncommitted(self, tp: TP) -> int | None:
        committed = self._committed_offset[tp]
        if committed is not None:
            return committed
        return getattr(self, "start_offsets", {}).get(tp)

    def _new_offset(self, tp: TP) -> int | None:
        """One past the run of acked offsets that starts at the next uncommitted record.

        ``None`` while that record is not acknowledged (a gap at the head). Offset ranges
        that hold no record (transaction markers, compacted away) count as acknowledged.
        """
        acked = self._acked[tp]
        if not acked:
            return None
        gaps = self._gap[tp]
        if gaps:
            top = max(acked)
            filled: list[int] = []
            for interval in sorted(gaps.overlap(0, top), key=lambda i: i.begin):
                filled.extend(range(interval.begin, interval.end))
            given_up = self._unprocessed.get(tp)
            if given_up:  # records were there after all: acknowledged only when processed
                filled = [offset for offset in filled if offset not in given_up]
            if filled:
                acked.extend(filled)
                gaps.chop(0, max(filled[-1], top + 1))
        acked.sort()
        index = self._acked_index[tp]
        expected = self._next_uncommitted(tp)
        if expected is not None:
            stale = bisect.bisect_left(acked, expected)
            if stale:  # acknowledged again after a seek back: already committed
                index.difference_update(acked[:stale])
                del acked[:stale]
            if not acked:
                return None
            if acked[0] != expected and not self._nothing_to_process(tp, expected, acked[0]):
                self._note_blocked_head(tp, expected, acked[0])
                return None
        self._blocked_since.pop(tp, None)
        end = 0
        while end + 1 < len(acked) and acked[end + 1] <= acked[end] + 1:
            end += 1
        last = acked[end]
        index.difference_update(acked[: end + 1])
        del acked[: end + 1]
        given_up = self._unprocessed.get(tp)
        if given_up is not None:  # those up to ``last`` were processed since
            given_up.difference_update([offset for offset in given_up if offset <= last])
            if not given_up:
                del self._unprocessed[tp]
        hole = self._holes.get(tp)
        if hole is not None and last >= hole[1]:
            del self._holes[tp]
        return last + 1

    def _nothing_to_process(self, tp: TP, start: int, end: int) -> bool:
        """Whether ``tp`` has no record in ``[start, end)`` that a stream still has to process.

        A stream takes a partition's records in order, so when ``end`` was taken every
        record below it was taken too and is in flight, or was given up, or there is no such
        record, or Faust dropped it. Unless in flight or proven absent (:meth:`getmany`),
        the partition is read again from ``start``.
        """
        if any(m.tp == tp and m.offset < end and not m.acked for m in list(self._unacked_messages)):
            return False
        given_up = self._given_up_in(tp, start, end)
        if not given_up:
            empty = self._no_records.get(tp)
            if empty is not None and empty[0] <= start and end <= empty[1]:
                return True  # since the last two seeks, the first record after ``start`` is ``end``
            hole = self._holes.get(tp)
            if hole is not None and hole[0] <= start and end <= hole[1]:
                self._read_again(  # markers under exactly_once look like this every time
                    tp, start, f"offsets {start}..{end - 1} looked empty once", logging.INFO
                )
                return False
            # Nothing explains the hole (Faust drops records in places): read it again; the
            # first record read after the seek shows whether it holds any.
            self._read_again(tp, start, f"nothing explains the hole up to offset {end}")
        else:  # given-up records are real: never committed past
            self._read_again(tp, start, f"records {given_up[0]}..{given_up[-1]} were given up")
        return False

    def _sweep_unprocessed(self) -> None:
        """Read again partitions whose given-up records are at the head of their commits.

        :meth:`_new_offset` sees them only behind an acknowledged record; a given-up record
        with nothing acknowledged after it (the partition's last one) is caught here.
        """
        if not (self._unprocessed or self._holes):
            return
        assigned = self.assignment()
        for tp in [tp for tp in self._holes if tp not in assigned]:
            del self._holes[tp]  # seen under an earlier assignment: proves nothing now
        for tp, offsets in list(self._unprocessed.items()):
            expected, high = self._next_uncommitted(tp), max(offsets)
            if tp not in assigned:
                self._unprocessed.pop(tp, None)  # its new owner reads it from the commit point
            elif expected is None:
                continue
            elif expected > high:
                self._unprocessed.pop(tp, None)
            elif not self._acked.get(tp):
                self._nothing_to_process(tp, expected, high + 1)

    async def _read_stalled_again(self) -> None:
        """Read again partitions whose records past the commit point no stream has taken for
        :data:`STALLED_READ_S` seconds (item 8 of the module docstring).

        Only partitions with nothing in flight and nothing acknowledged count as idle, so
        reading one again never repeats a record processed since the last commit; their end
        offsets are asked for at most once per :data:`STALLED_READ_S`.
        """
        app = self.app
        if app.rebalancing or app.in_recovery or not app.flow_control.is_active():
            self._idle_since.clear()
            return
        now = time.monotonic()
        busy = {m.tp for m in list(self._unacked_messages) if not m.acked}
        streams = app.topics.acks_enabled_for
        changelogs = app.tables.changelog_topics
        due: list[TP] = []
        for tp in self.assignment():
            if tp.topic in changelogs or not streams(tp.topic):
                continue
            head = self._next_uncommitted(tp)
            if head is None or tp in busy or self._acked.get(tp) or tp in self._rereading:
                self._idle_since.pop(tp, None)
                continue
            mark = self._idle_since.get(tp)
            if mark is None or mark[0] != head:
                self._idle_since[tp] = (head, now)
            elif now - mark[1] >= STALLED_READ_S:
                self._idle_since[tp] = (head, now)  # asked again after another period
                due.append(tp)
        if not due:
            return
        try:
            ends = await asyncio.wait_for(self.highwaters(*due), timeout=END_OFFSETS_TIMEOUT_S)
        except Exception as exc:  # a broker restarting: ask again after another period
            logger.info("end offsets of idle partitions not known, asked again later: %r", exc)
            return
        for tp in due:
            head, end = self._next_uncommitted(tp), ends.get(tp)
            if head is None or end is None or head >= end or tp not in self.assignment():
                continue
            if self._stall_reads.get(tp) == (head, end) and self._probes.get(tp) == head:
                continue  # read again and nothing came: only transaction markers are there
            paused = tp in self._paused_partitions
            if paused:
                self.resume_partitions({tp})
            self._probes.pop(tp, None)
            self._stall_reads[tp] = (head, end)
            self._read_again(
                tp,
                head,
                f"offsets {head}..{end - 1} were not taken by a stream for "
                f"{STALLED_READ_S:.0f}s (paused: {paused}, read offset: "
                f"{self._read_offset.get(tp)}; client: {self._fetch_state(tp)})",
                level=logging.INFO,  # transaction markers alone look the same; see getmany
            )

    def _fetch_state(self, tp: TP) -> str:
        """What the Kafka client's fetcher holds for ``tp``, for the log: why it fetches none.

        Read from the consumer thread's client without its lock; a diagnostic only.
        """
        try:
            client = self._thread._consumer
            assignment = client._subscription.subscription.assignment
            state = assignment.state_value(tp)
            fetcher = client._fetcher
            buffered = fetcher._records.get(tp)
            node = fetcher._select_read_replica(tp)
            return (
                f"position {state._position}, paused {state.paused}, reset "
                f"{state.reset_strategy}, buffered {buffered is not None}, node {node}, "
                f"in flight {sorted(fetcher._in_flight)}, highwater {client.highwater(tp)}"
            )
        except Exception as exc:  # another client version, or no assignment: say so
            return f"unknown ({exc!r})"

    def _read_again(self, tp: TP, offset: int, why: str, level: int = logging.WARNING) -> None:
        """Seek ``tp`` back to ``offset``, its commit point, to read given-up records again.

        One seek at a time, and another only once a record was read since the last one
        (``_probes``): records still being fetched again must not be fetched a third time.
        """
        if tp in self._rereading or tp in self._probes or not self.app.flow_control.is_active():
            return
        if tp not in self.assignment():
            self._unprocessed.pop(tp, None)
            return
        logger.log(level, "reading %s[%d] again from %d: %s", tp.topic, tp.partition, offset, why)
        self._rereading.add(tp)
        task = asyncio.ensure_future(self._seek_back(tp, offset))
        self._seek_tasks.add(task)
        task.add_done_callback(self._seek_tasks.discard)

    async def _seek_back(self, tp: TP, offset: int) -> None:
        try:
            await self.seek_wait({tp: offset})
            self._sought(tp, offset)
        except Exception:
            logger.warning("could not seek %s[%d] back", tp.topic, tp.partition, exc_info=True)
        finally:
            self._rereading.discard(tp)

    @property
    def _blocked_since(self) -> dict[TP, float]:
        blocked: dict[TP, float] | None = getattr(self, "_blocked_since_by_tp", None)
        if blocked is None:
            blocked = self._blocked_since_by_tp = {}
        return blocked

    def _note_blocked_head(self, tp: TP, expected: int, next_acked: int) -> None:
        """Warn (once per episode) when later records are done but the next one is not."""
        since = self._blocked_since.setdefault(tp, time.monotonic())
        if since and time.monotonic() - since >= BLOCKED_HEAD_WARN_S:
            self._blocked_since[tp] = 0.0
            logger.warning(
                "commits of %s[%d] held at offset %d for %.0fs: offsets from %d on are "
                "acknowledged but %d is not (in flight, or being read again)",
                tp.topic,
                tp.partition,
                expected,
                BLOCKED_HEAD_WARN_S,
                next_acked,
                expected,
            )

    async def wait_empty(self) -> None:
        """Wait for started records to be acked, at most :func:`wait_empty_limit` seconds."""
        limit = wait_empty_limit(float(self.app.conf.broker_rebalance_timeout))
        deadline = time.monotonic() + limit
        while not self.should_stop and self._unacked_messages:
            await _finish_within(self.commit(), deadline, "a commit")
            if not self._unacked_messages:
                break
            if time.monotonic() >= deadline:
                pending = sorted(
                    f"{m.tp.topic}[{m.tp.partition}]@{m.offset}" for m in self._unacked_messages
                )
                logger.warning(
                    "still %d unacknowledged record(s) after %.1fs (%s); going on without "
                    "them: they are not committed and will be processed again",
                    len(pending),
                    limit,
                    ", ".join(pending[:5]),
                )
                break
            await self._wait_for_ack(timeout=1)
            gc.collect()  # the set is weak: records nobody references any more leave it
            self._clean_unacked_messages()
        await _finish_within(
            self.commit_and_end_transactions(), time.monotonic() + limit, "the last commit"
        )


async def _finish_within(call: Awaitable[object], deadline: float, what: str) -> None:
    """Await ``call`` until ``deadline`` (monotonic), then go on without it.

    A commit waits for the group coordinator; after a broker restart it never answered and
    the worker hung in its revocation or its shutdown, ignoring SIGTERM (seen in a chaos run).
    Offsets not committed are read again by the partition's next owner (at least once). The
    call is shielded: it goes on in the background rather than being cut off half-way.
    """
    task = asyncio.ensure_future(call)
    try:
        await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        task.add_done_callback(_log_late_failure)
        logger.warning(
            "%s did not finish in time (the broker or group coordinator does not answer); "
            "going on: offsets not committed are read again by the partitions' next owner",
            what,
        )


def _log_late_failure(task: asyncio.Future[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("a commit given up on failed later: %r", task.exception())


class EventProProducerBuffer(ProducerBuffer):
    """Faust's producer buffer; :meth:`flush` returns only once every record left it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.handing_over = 0
        """Records taken from the queue whose hand-over to the Kafka client has not finished."""
        self._collectors: list[list[FutureMessage]] = []

    def put(self, fut: FutureMessage) -> None:
        """Buffer ``fut``; every :meth:`collect` block running sees it too."""
        super().put(fut)
        for collector in self._collectors:
            collector.append(fut)

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[FutureMessage]]:
        """The futures of the records buffered inside the block (each resolves on the ack).

        Lets a caller wait for *its* records only; ``flush`` would also push out everybody
        else's half-filled batches at once (measured: 4.7x slower batches of the inventory
        agent when it flushed twice per batch).
        """
        futures: list[FutureMessage] = []
        self._collectors.append(futures)
        try:
            yield futures
        finally:
            self._collectors.remove(futures)

    async def _send_pending(self, fut: FutureMessage) -> None:
        self.handing_over += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.handing_over -= 1

    @property
    def unsent(self) -> int:
        """Records not yet handed to the Kafka client (queued or being handed over)."""
        return self.size + self.handing_over

    async def flush(self) -> None:
        """Wait until every buffered record was handed to the Kafka client.

        :raises RuntimeError: the buffer stops with records still in it (nothing may be
            committed on top of them).
        """
        while self.unsent:
            if self.should_stop or self.state != "running":
                raise RuntimeError(f"producer buffer stopping with {self.unsent} unsent record(s)")
            self.message_sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)


class EventProProducer(aiokafka_driver.Producer):
    """Faust's aiokafka producer with :class:`EventProProducerBuffer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = EventProProducerBuffer(loop=self.loop, beacon=self.beacon)
        if self.threaded_producer is not None:
            buffer.threaded_producer = self.threaded_producer
        buffer.app = self.app
        self.buffer = buffer

    @property
    def kafka_producer(self) -> aiokafka.AIOKafkaProducer | None:
        """The running Kafka client (not a transactional one), ``None`` until started."""
        return self._producer


class DiscardNotingFlowControl(FlowControlEvent):
    """Faust's flow control of the streams, telling :attr:`on_discard` which records a
    resume throws away.

    Resuming the flow empties every stream's queue. Faust's recovery resumes the stream
    partitions and seeks them to their commit points while the flow is already active, then
    resumes it again: records the fetch loop handed over meanwhile were thrown away,
    unprocessed, unacknowledged and unnoted (seen: after a broker restart, a request
    partition's records 26..31 waited 22 s for the stall check).
    """

    on_discard: Callable[[list[Message]], None] | None = None

    def clear(self) -> None:
        if self.on_discard is not None and self.is_active():  # a resume, not a revocation
            messages: list[Message] = []
            for queue in list(self._queues):
                for item in list(queue._queue):  # type: ignore[attr-defined]
                    message = getattr(item, "message", None)  # an event; others are skipped
                    if message is not None:
                        messages.append(message)
            if messages:
                self.on_discard(messages)
        super().clear()


class EventProConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's Kafka consumer thread, confirming :data:`~eventpro.membership.group_lease` with
    each heartbeat the coordinator accepts and each assignment."""

    async def on_start(self) -> None:
        await super().on_start()
        group_lease.start(float(self.app.conf.broker_session_timeout))
        coordinator = getattr(self._consumer, "_coordinator", None)
        if hasattr(coordinator, "_do_heartbeat"):
            coordinator._do_heartbeat = _confirming(coordinator._do_heartbeat)  # type: ignore[union-attr]

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        group_lease.confirm(group_lease.now())
        await super().on_partitions_assigned(assigned, generation_id)


def _confirming(do_heartbeat: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    """aiokafka's heartbeat call, confirming the lease when the coordinator accepted it."""

    async def heartbeat() -> bool:
        sent_at = group_lease.now()
        accepted = await do_heartbeat()
        if accepted:
            group_lease.confirm(sent_at)
        return accepted

    return heartbeat


class EventProTransport(aiokafka_driver.Transport):
    """The ``kafka://`` transport with :class:`EventProProducer` and :class:`EventProConsumer`."""

    Consumer = EventProConsumer
    Producer = EventProProducer
