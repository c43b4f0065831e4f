"""The transport fixes: a producer buffer flush that really waits, a bounded rebalance wait."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP

import eventpro.transport as transport_module
from eventpro.app import create_app
from eventpro.settings import Settings
from eventpro.transport import (
    EventProConsumer,
    EventProProducerBuffer,
    EventProTransport,
    wait_empty_limit,
)
from tests.support.waiting import wait_for


class _SlowChannel:
    """A channel whose hand-over to the Kafka client blocks until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.published: list[str] = []
        self.changed = asyncio.Condition()

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await self.release.wait()
        async with self.changed:
            self.published.append(fut.message.value)
            self.changed.notify_all()


def _record(channel: _SlowChannel, value: str) -> Any:
    return SimpleNamespace(message=SimpleNamespace(channel=channel, value=value))


async def _stop_after(buffer: ProducerBuffer, channel: _SlowChannel, sent: int) -> None:
    """Let every record through, wait until ``sent`` were published, stop the buffer."""
    channel.release.set()
    async with asyncio.timeout(5), channel.changed:
        await channel.changed.wait_for(lambda: len(channel.published) >= sent)
    await buffer.stop()


async def _started(buffer: ProducerBuffer) -> ProducerBuffer:
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buffer.start()
    return buffer


async def test_faust_buffer_flush_returns_with_records_still_unsent() -> None:
    """The bug being fixed: Faust's flush gives up after 0.1 s without progress."""
    channel = _SlowChannel()
    buffer = await _started(ProducerBuffer())
    try:
        for value in ("a", "b"):
            buffer.put(_record(channel, value))  # type: ignore[arg-type]
        await asyncio.wait_for(buffer.flush(), timeout=5)
        assert channel.published == []
    finally:
        await _stop_after(buffer, channel, 2)


async def test_flush_waits_until_every_record_reached_the_client() -> None:
    channel = _SlowChannel()
    buffer = await _started(EventProProducerBuffer())
    try:
        for value in ("a", "b", "c"):
            buffer.put(_record(channel, value))  # type: ignore[arg-type]
        flush = asyncio.ensure_future(buffer.flush())
        done, _ = await asyncio.wait({flush}, timeout=1.5)
        assert not done, "flush returned while records were still being handed over"
        assert buffer.unsent == 3
        channel.release.set()
        await asyncio.wait_for(flush, timeout=5)
        assert channel.published == ["a", "b", "c"]
        assert buffer.unsent == 0
    finally:
        await _stop_after(buffer, channel, 3)


async def test_flush_of_a_stopped_buffer_with_records_refuses() -> None:
    channel = _SlowChannel()
    buffer = await _started(EventProProducerBuffer())
    buffer.put(_record(channel, "a"))  # type: ignore[arg-type]
    await _stop_after(buffer, channel, 1)
    buffer.put(_record(channel, "late"))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="unsent"):
        await asyncio.wait_for(buffer.flush(), timeout=5)


@dataclass(eq=False)
class _Message:
    tp: Any
    offset: int


class _StuckConsumer:
    """What ``EventProConsumer.wait_empty`` uses of a consumer, with one record never acked."""

    def __init__(self, rebalance_timeout: float) -> None:
        self.app = SimpleNamespace(conf=SimpleNamespace(broker_rebalance_timeout=rebalance_timeout))
        message = _Message(tp=SimpleNamespace(topic="orders", partition=1), offset=21)
        self._unacked_messages: set[_Message] = {message}
        self.should_stop = False
        self.commits = 0
        self.final_commits = 0

    async def commit(self) -> bool:
        self.commits += 1
        return False

    async def _wait_for_ack(self, timeout: float) -> None:  # noqa: ASYNC109 (Faust's signature)
        await asyncio.sleep(0)

    def _clean_unacked_messages(self) -> None:
        pass

    async def commit_and_end_transactions(self) -> None:
        self.final_commits += 1


async def test_wait_empty_gives_up_after_the_limit_and_still_commits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = _StuckConsumer(rebalance_timeout=2.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.WARNING, logger="eventpro.transport"):
        await asyncio.wait_for(EventProConsumer.wait_empty(consumer), timeout=10)  # type: ignore[arg-type]
    assert loop.time() - began >= wait_empty_limit(2.0)
    assert consumer.commits >= 1
    assert consumer.final_commits == 1
    assert "orders[1]@21" in caplog.text


async def test_wait_empty_returns_at_once_when_everything_is_acked() -> None:
    consumer = _StuckConsumer(rebalance_timeout=20.0)
    consumer._unacked_messages.clear()
    await asyncio.wait_for(EventProConsumer.wait_empty(consumer), timeout=1)  # type: ignore[arg-type]
    assert consumer.commits == 0
    assert consumer.final_commits == 1


def test_limit_stays_inside_the_rebalance_timeout() -> None:
    assert wait_empty_limit(20.0) == 5.0
    assert wait_empty_limit(0.5) == 1.0


def test_kafka_apps_use_the_eventpro_transport(tmp_path: Any) -> None:
    app = create_app(Settings(app_id="transport-test", data_dir=str(tmp_path)))
    assert isinstance(app.transport, EventProTransport)
    assert isinstance(app.consumer, EventProConsumer)
    assert isinstance(app.producer.buffer, EventProProducerBuffer)


async def test_a_transaction_commits_only_after_the_buffered_table_writes_left(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust does not flush before a transactional commit; buffered writes would slip into
    the next transaction and a crash would lose them under a committed input offset."""
    app = create_app(
        Settings(app_id="eos-flush", data_dir=str(tmp_path), processing_guarantee="exactly_once")
    )
    calls: list[str] = []

    async def flush() -> None:
        calls.append("flush")

    async def parent_commit(
        self: Any, topics: Any = None, start_new_transaction: bool = True
    ) -> bool:
        calls.append("commit")
        return True

    monkeypatch.setattr(app.producer, "flush", flush)
    monkeypatch.setattr(aiokafka_driver.Consumer, "commit", parent_commit)
    monkeypatch.setattr(app, "in_worker", True)
    assert app.in_transaction
    assert await app.consumer.commit() is True
    assert calls == ["flush", "commit"]


class Msg(SimpleNamespace):  # hashable and weak-referenceable, as Faust's unacked set needs
    __hash__ = object.__hash__


def _in_flight(consumer: Any, tp: TP, offset: int, generation: int = 0) -> Any:
    """A record a stream took and has not acknowledged yet (keep a reference to it)."""
    message = Msg(tp=tp, topic=tp.topic, offset=offset, acked=False, generation_id=generation)
    consumer._unacked_messages.add(message)
    return message


def _offsets_consumer(tmp_path: Any, committed: int | None, acked: list[int]) -> Any:
    app = create_app(Settings(app_id="offsets", data_dir=str(tmp_path)))
    consumer = app.consumer
    tp = TP("ticket-requests", 0)
    consumer._committed_offset[tp] = committed
    consumer._acked[tp] = list(acked)
    consumer._acked_index[tp] = set(acked)
    return consumer, tp


def test_faust_commits_past_an_unacknowledged_record_at_the_head(tmp_path: Any) -> None:
    """The bug being fixed: record 6 was never processed, yet Faust's offset skips it."""
    consumer, tp = _offsets_consumer(tmp_path, committed=6, acked=list(range(7, 63)))
    assert aiokafka_driver.Consumer._new_offset(consumer, tp) == 63
    consumer, tp = _offsets_consumer(tmp_path, committed=None, acked=[3, 4])
    assert aiokafka_driver.Consumer._new_offset(consumer, tp) == 5


def test_nothing_is_committed_while_the_next_record_is_unacknowledged(tmp_path: Any) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=6, acked=list(range(7, 63)))
    in_flight = _in_flight(consumer, tp, 6)
    assert consumer._new_offset(tp) is None
    in_flight.acked = True
    consumer._acked[tp].append(6)
    consumer._acked_index[tp].add(6)
    assert consumer._new_offset(tp) == 63
    assert consumer._acked[tp] == [] and consumer._acked_index[tp] == set()


def test_the_run_stops_at_the_first_gap_and_old_acks_are_dropped(tmp_path: Any) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=10, acked=[4, 10, 11, 13])
    assert consumer._new_offset(tp) == 12
    assert consumer._acked[tp] == [13] and consumer._acked_index[tp] == {13}


def test_a_partition_never_committed_starts_where_reading_started(tmp_path: Any) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=None, acked=[3, 4])
    consumer.start_offsets = {tp: 0}
    in_flight = _in_flight(consumer, tp, 1)
    assert consumer._new_offset(tp) is None
    in_flight.acked = True
    consumer._acked[tp] = [0, 1, 2, 3, 4]
    consumer._acked_index[tp] = {0, 1, 2, 3, 4}
    assert consumer._new_offset(tp) == 5


def test_offsets_without_records_count_as_acknowledged(tmp_path: Any) -> None:
    """Transaction markers leave offsets no consumer ever sees (Faust records them as gaps)."""
    consumer, tp = _offsets_consumer(tmp_path, committed=5, acked=[7, 8])
    consumer._gap[tp].addi(5, 7)
    assert consumer._new_offset(tp) == 9


async def test_partitions_without_a_committed_offset_are_read_from_their_beginning(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records fetched before the seek are dropped when flow control resumes; a partition
    Faust does not seek (nothing committed) would skip them."""
    consumer, tp = _offsets_consumer(tmp_path, committed=None, acked=[])
    committed_tp, changelog_tp = TP("ticket-requests", 1), TP("inventory-changelog", 0)
    consumer._committed_offset[committed_tp] = 40
    seeks: list[tuple[TP, int]] = []

    async def parent_seek(self: Any) -> None:
        pass

    async def earliest(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 0)

    async def seek(partition: TP, offset: int) -> None:
        seeks.append((partition, offset))

    monkeypatch.setattr(aiokafka_driver.Consumer, "perform_seek", parent_seek)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp, committed_tp, changelog_tp})
    monkeypatch.setattr(consumer, "earliest_offsets", earliest)
    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(
        consumer.app.topics, "acks_enabled_for", lambda topic: "changelog" not in topic
    )
    await consumer.perform_seek()
    assert seeks == [(tp, 0)]
    assert consumer.start_offsets == {tp: 0}


def test_a_commit_held_by_one_record_is_reported(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(transport_module, "BLOCKED_HEAD_WARN_S", 0.0)
    consumer, tp = _offsets_consumer(tmp_path, committed=6, acked=[7, 8])
    in_flight = _in_flight(consumer, tp, 6)
    with caplog.at_level(logging.WARNING, logger="eventpro.transport"):
        assert consumer._new_offset(tp) is None
        assert consumer._new_offset(tp) is None  # once per episode
    assert caplog.text.count("held at offset 6") == 1
    assert "offsets from 7 on are acknowledged but 6 is not" in caplog.text
    assert not in_flight.acked


def test_a_record_a_stream_skipped_is_not_committable(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's Stream acks records it skips (old generation, flow control suspended)."""
    consumer, tp = _offsets_consumer(tmp_path, committed=10, acked=[])
    app = consumer.app
    monkeypatch.setattr(app, "consumer_generation_id", 7)

    def message(offset: int, generation: int) -> Any:
        return Msg(tp=tp, topic=tp.topic, offset=offset, acked=False, generation_id=generation)

    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    stale = message(10, generation=6)
    assert consumer.ack(stale) is False and stale.acked
    app.flow_control.suspend()
    suspended = message(11, generation=7)
    assert consumer.ack(suspended) is False and suspended.acked
    app.flow_control.resume()
    current = message(10, generation=7)
    assert consumer.ack(current) is True
    assert consumer._acked[tp] == [10]
    assert consumer._unprocessed == {tp: {10, 11}}  # to be read again


def _fetched(monkeypatch: pytest.MonkeyPatch, batches: list[list[Any]], during: Any = None) -> None:
    """Faust's ``getmany`` returns ``batches``, one per call; ``during`` runs mid-batch."""

    async def parent_getmany(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        for index, message in enumerate(batches.pop(0)):
            if index == 1 and during is not None:
                during()
            yield message.tp, message

    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", parent_getmany)


def _record_seeks(consumer: Any, monkeypatch: pytest.MonkeyPatch, *tps: TP) -> list[dict[TP, int]]:
    """Seeks of the consumer (assigned ``tps``, flow active) land in the returned list."""
    seeks: list[dict[TP, int]] = []

    async def seek_wait(partitions: dict[TP, int]) -> None:
        seeks.append(dict(partitions))

    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    monkeypatch.setattr(consumer, "assignment", lambda: set(tps))
    consumer.app.flow_control.resume()
    return seeks


async def _sweep(consumer: Any) -> None:
    """The commit's sweep of given-up records, and the seeks back it starts."""
    consumer._sweep_unprocessed()
    await asyncio.gather(*consumer._seek_tasks)


async def _read(consumer: Any) -> list[int]:
    return [message.offset async for _, message in consumer.getmany(timeout=1.0)]


async def test_offsets_at_the_head_shown_to_hold_no_record_are_committed_past(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under read_committed an aborted transaction's records and the markers are never
    delivered; after a seek to 11 Faust's gap tracking starts at 12 and misses 11. Two reads
    from 11 that both begin at 14 prove it."""
    consumer, tp = _offsets_consumer(tmp_path, committed=11, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    consumer._sought(tp, 11)
    _fetched(monkeypatch, [[Msg(tp=tp, offset=14), Msg(tp=tp, offset=15)]] * 2)
    assert await _read(consumer) == [14, 15]  # the first record after the seek is 14
    consumer._acked[tp] = [14, 15]
    consumer._acked_index[tp] = {14, 15}
    later = _in_flight(consumer, tp, 16)  # in flight above the head: no reason to wait
    assert consumer._new_offset(tp) is None  # seen once: read again to confirm
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 11}]
    assert await _read(consumer) == [14, 15]  # the same again
    assert consumer._new_offset(tp) == 16
    assert later.acked is False and consumer._holes == {}


async def test_a_hole_seen_once_is_read_again_and_a_record_there_disproves_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under at-least-once every offset holds a record, yet chaos runs saw the first record
    after a seek to 24 be 50 several times a run (a fetch racing the seek)."""
    consumer, tp = _offsets_consumer(tmp_path, committed=24, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    consumer._sought(tp, 24)
    _fetched(monkeypatch, [[Msg(tp=tp, offset=50)], [Msg(tp=tp, offset=o) for o in (24, 25)]])
    assert await _read(consumer) == [50]
    consumer._acked[tp] = [50]
    consumer._acked_index[tp] = {50}
    assert consumer._new_offset(tp) is None
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 24}]
    assert await _read(consumer) == [24, 25]  # records were there after all
    assert consumer._holes == {} and consumer._no_records == {}
    consumer._acked[tp] = [24, 25, 50]
    consumer._acked_index[tp] = {24, 25, 50}
    assert consumer._new_offset(tp) == 26


async def test_an_unexplained_hole_at_the_head_is_read_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records 11-13 were fetched but never reached a stream (Faust drops some records)."""
    consumer, tp = _offsets_consumer(tmp_path, committed=11, acked=[14, 15])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    assert consumer._new_offset(tp) is None
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 11}]
    _fetched(monkeypatch, [[Msg(tp=tp, offset=o) for o in (11, 12, 13, 14)]])
    assert await _read(consumer) == [11, 12, 13, 14]  # read again, then processed
    consumer._acked[tp] = [11, 12, 13, 14, 15]
    consumer._acked_index[tp] = set(consumer._acked[tp])
    assert consumer._new_offset(tp) == 16


async def test_a_given_up_record_is_read_again_even_where_no_record_seemed_to_be(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=11, acked=[14])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    consumer._no_records[tp] = (11, 14)
    consumer.note_unprocessed(Msg(tp=tp, offset=12))  # real: a stream had it
    assert consumer._new_offset(tp) is None
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 11}]


async def test_records_fetched_before_a_seek_are_not_delivered(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivered, they moved Faust's read offset past the records the seek fetches again,
    and Faust dropped those as already read."""
    consumer, tp = _offsets_consumer(tmp_path, committed=419, acked=[])
    other = TP("payments", 0)
    consumer._sought(tp, 419)
    consumer._sought(other, 0)
    stale = [Msg(tp=tp, offset=437), Msg(tp=tp, offset=438), Msg(tp=other, offset=0)]
    _fetched(monkeypatch, [stale], during=lambda: consumer._sought(tp, 419))
    assert await _read(consumer) == [437, 0]  # 438 came after the seek: withheld
    assert consumer._unprocessed == {tp: {438}}
    assert consumer._no_records == {}  # 437 proves nothing: the seek came after it


async def test_records_given_up_as_stale_after_a_repeated_seek_are_read_again_at_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen after a broker restart: two seeks to the commit point 24, the client fetched
    24..35 after the second one, which was noted only while they were delivered; 25..35
    were given up as stale and no record came after them. They are read again with the next
    commit, not after the 15 s stall check."""
    consumer, tp = _offsets_consumer(tmp_path, committed=24, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    consumer._sought(tp, 24)
    fetch = [Msg(tp=tp, offset=offset) for offset in range(24, 36)]
    _fetched(monkeypatch, [fetch], during=lambda: consumer._sought(tp, 24))
    assert await _read(consumer) == [24]
    assert consumer._unprocessed == {tp: set(range(25, 36))}
    assert tp not in consumer._probes  # no record of that seek may come
    consumer._acked[tp] = [24]  # 24 was processed
    consumer._acked_index[tp] = {24}
    assert consumer._new_offset(tp) == 25
    consumer._committed_offset[tp] = 25  # committed
    consumer._sweep_unprocessed()  # with the next commit
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 25}]


async def test_records_a_resume_of_the_flow_throws_away_are_read_again_at_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen after a broker restart: Faust's recovery sought the request partitions with the
    flow already active, the fetch loop handed 24..31 to the streams meanwhile, then it
    resumed the flow again, which emptied the queue holding 26..31. Noted, they are read
    again with the next commit, not after the 15 s stall check."""
    consumer, tp = _offsets_consumer(tmp_path, committed=24, acked=[])
    monkeypatch.setattr(
        consumer.app.topics, "acks_enabled_for", lambda topic: "changelog" not in topic
    )
    seeks = _record_seeks(consumer, monkeypatch, tp)  # the flow is active
    consumer._sought(tp, 24)
    flow = consumer.app.flow_control
    queue = consumer.app.FlowControlQueue(maxsize=100, clear_on_resume=True)
    changelog = TP("eventpro-inventory-changelog", 0)
    queued = [Msg(tp=tp, topic=tp.topic, offset=offset, acked=False) for offset in range(26, 32)]
    queued.append(Msg(tp=changelog, topic=changelog.topic, offset=7, acked=False))
    for message in queued:
        queue.put_nowait(SimpleNamespace(message=message))
    flow.resume()
    assert queue.empty()  # Faust's own behaviour: a resume empties the streams' queues
    assert consumer._unprocessed == {tp: set(range(26, 32))}
    assert tp not in consumer._probes  # the seek's first record was among them
    consumer._acked[tp] = [24, 25]  # taken from the queue before, and processed
    consumer._acked_index[tp] = {24, 25}
    assert consumer._new_offset(tp) == 26
    consumer._committed_offset[tp] = 26
    await _sweep(consumer)
    assert seeks == [{tp: 26}]


async def test_records_thrown_away_when_partitions_are_revoked_are_not_noted(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation suspends the flow and empties the queues too; the next owner (or this
    worker, after its seek to the commit points) reads those records again anyway."""
    consumer, tp = _offsets_consumer(tmp_path, committed=24, acked=[])
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: True)
    queue = consumer.app.FlowControlQueue(maxsize=100, clear_on_resume=True)
    queue.put_nowait(SimpleNamespace(message=Msg(tp=tp, topic=tp.topic, offset=26, acked=False)))
    consumer.app.flow_control.suspend()
    consumer.app.flow_control.clear()
    assert queue.empty() and consumer._unprocessed == {}


def _fetched_across_a_seek(
    consumer: Any, monkeypatch: pytest.MonkeyPatch, tp: TP, seek_to: int, offsets: list[int]
) -> None:
    """One fetch, asked for before a seek of ``tp`` and returned after it."""

    async def parent_getmany(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        consumer._sought(tp, seek_to)  # Faust seeks while the consumer thread fetches
        for offset in offsets:
            yield tp, Msg(tp=tp, offset=offset)

    monkeypatch.setattr(aiokafka_driver.Consumer, "getmany", parent_getmany)


async def test_a_fetch_asked_before_a_seek_proves_no_offset_empty(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in a chaos run: records 41.. computed from the old position arrived after the
    seek to 32 and passed for its first records; 32..40 were committed past, never decided."""
    consumer, tp = _offsets_consumer(tmp_path, committed=32, acked=[])
    consumer._sought(tp, None)
    _fetched_across_a_seek(consumer, monkeypatch, tp, 32, [41, 42])
    assert await _read(consumer) == []
    assert consumer._no_records == {} and tp not in consumer._probes
    assert consumer._unprocessed == {tp: {41, 42}}  # read again from the commit point
    seeks = _record_seeks(consumer, monkeypatch, tp)
    await _sweep(consumer)
    assert seeks == [{tp: 32}]


async def test_a_fetch_asked_before_a_seek_that_starts_at_its_offset_is_delivered(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=32, acked=[])
    consumer._sought(tp, None)
    _fetched_across_a_seek(consumer, monkeypatch, tp, 32, [32, 33])
    assert await _read(consumer) == [32, 33]
    assert consumer._unprocessed == {} and tp not in consumer._probes


def _faust_fetches(
    consumer: Any, monkeypatch: pytest.MonkeyPatch, tp: TP, fetches: list[list[int]]
) -> None:
    """Faust's own ``getmany`` runs on fetches of ``tp`` returning these offsets, one per call."""

    async def parent_wait(self: Any, timeout: float) -> Any:  # noqa: ASYNC109
        records = [
            ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])
            for offset in fetches.pop(0)
        ]
        return {tp: records}, {tp}

    monkeypatch.setattr(aiokafka_driver.Consumer, "_wait_next_records", parent_wait)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 0)


def _coordinator_gone(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeks to the committed offsets fail, as right after a broker restart."""

    async def coordinator_gone() -> dict[TP, int]:
        raise ConnectionError("the group coordinator is not available")

    monkeypatch.setattr(consumer, "seek_to_committed", coordinator_gone)


async def test_records_faust_drops_from_a_fetch_are_never_committed_past(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen in a chaos run right after a broker restart: Faust's getmany dropped a fetch of
    32..40 (the flow had stopped, and its seek back to the committed offsets failed); the next
    fetch began at 41, passed for the first record after the seek to 32, and 32..40 were
    committed past, never decided."""
    consumer, tp = _offsets_consumer(tmp_path, committed=32, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    consumer._sought(tp, 32)
    _faust_fetches(consumer, monkeypatch, tp, [list(range(32, 41)), [41, 42]])
    _coordinator_gone(consumer, monkeypatch)
    consumer.stop_flow()
    with caplog.at_level(logging.WARNING):
        assert await _read(consumer) == []
    assert "exception performing seek when flow not active" in caplog.text
    assert consumer._unprocessed == {tp: set(range(32, 41))}
    consumer.resume_flow()
    assert await _read(consumer) == [41, 42]
    consumer._acked[tp] = [41, 42]
    consumer._acked_index[tp] = {41, 42}
    assert consumer._new_offset(tp) is None
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 32}]  # read again from the commit point


async def test_a_partition_whose_reread_records_faust_dropped_is_sought_again_at_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in chaos runs: after the broker restart's rebalance the records fetched from the
    commit point were dropped; no other seek came until the 15 s stall check, ~20 s later."""
    consumer, tp = _offsets_consumer(tmp_path, committed=27, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    consumer._sought(tp, 27)
    _faust_fetches(consumer, monkeypatch, tp, [[27, 28, 29, 30, 31]])
    _coordinator_gone(consumer, monkeypatch)
    consumer.stop_flow()  # the fetch arrives while the flow is stopped: Faust drops it all
    assert await _read(consumer) == []
    consumer.resume_flow()
    await _sweep(consumer)
    assert seeks == [{tp: 27}]


async def test_records_dropped_mid_batch_are_given_up_from_the_first_not_handed_over(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=10, acked=[])
    _record_seeks(consumer, monkeypatch, tp)
    _faust_fetches(consumer, monkeypatch, tp, [[10, 11, 12, 13]])
    read: list[int] = []
    async for _, message in consumer.getmany(timeout=1.0):
        read.append(message.offset)
        if message.offset == 11:
            consumer.stop_flow()  # a rebalance begins: Faust drops the rest of the batch
    assert read == [10, 11]
    assert consumer._unprocessed == {tp: {12, 13}}


async def test_records_a_fetch_returns_after_its_caller_was_cancelled_are_read_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen after a broker restart: Faust stopped the fetch loop for the rebalance, but the
    consumer thread's fetch went on, returned 28..35 of the new assignment to nobody and
    the partition waited 24 s for the stall check. They are given up, read again at once."""
    consumer, tp = _offsets_consumer(tmp_path, committed=28, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    returned: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def thread_getmany(active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
        return await returned  # the consumer thread's fetch, in the thread's own time

    monkeypatch.setattr(consumer._thread, "getmany", thread_getmany)
    fetch_loop = asyncio.ensure_future(consumer._getmany({tp}, 1.0))
    await asyncio.sleep(0)  # the fetch is under way
    fetch_loop.cancel()  # Faust's _stop_fetcher
    with pytest.raises(asyncio.CancelledError):
        await fetch_loop
    records = [
        ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])
        for offset in range(28, 36)
    ]
    returned.set_result({tp: records})

    async def given_up() -> bool:
        return tp in consumer._unprocessed

    await wait_for(given_up, 5.0, "the abandoned fetch's records given up")
    assert consumer._unprocessed == {tp: set(range(28, 36))}
    await _sweep(consumer)
    assert seeks == [{tp: 28}]


async def test_a_fetch_that_returns_to_its_caller_gives_nothing_up(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=28, acked=[])
    record = ConsumerRecord(tp.topic, tp.partition, 28, 0, 0, b"k", b"v", None, 1, 1, [])

    async def thread_getmany(active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
        return {tp: [record]}

    monkeypatch.setattr(consumer._thread, "getmany", thread_getmany)
    assert await consumer._getmany({tp}, 1.0) == {tp: [record]}
    assert consumer._unprocessed == {}


async def test_a_gap_never_counts_given_up_records_as_acknowledged(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust counts the offsets skipped between two records read as holding none, and the
    record just read as well: given up later, it was committed past."""
    consumer, tp = _offsets_consumer(tmp_path, committed=10, acked=[10, 13])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    await consumer._add_gap(tp, 11, 12)  # a marker at 11, then record 12 read
    consumer.note_unprocessed(Msg(tp=tp, offset=12))  # its batch gave it up
    assert consumer._new_offset(tp) == 12  # 10 and the marker, never 12
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [] and consumer._unprocessed == {tp: {12}}


async def test_markers_between_given_up_records_do_not_block_the_commits(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records 10, 11, 13, 14 and a transaction marker at 12: Faust dropped 11..14; read
    again, the marker's gap is acknowledged and the commits go on."""
    consumer, tp = _offsets_consumer(tmp_path, committed=10, acked=[])
    _record_seeks(consumer, monkeypatch, tp)
    consumer._note_unprocessed(tp, [11, 13, 14])
    consumer._acked[tp] = [10, 11, 13, 14]  # read again and processed
    consumer._acked_index[tp] = {10, 11, 13, 14}
    await consumer._add_gap(tp, 12, 13)
    assert consumer._new_offset(tp) == 15
    assert consumer._unprocessed == {}


async def test_a_record_given_up_at_the_head_is_read_again_from_the_commit_point(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, tp = _offsets_consumer(tmp_path, committed=10, acked=[13, 14])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    consumer.note_unprocessed(Msg(tp=tp, offset=11))
    consumer.note_unprocessed(Msg(tp=tp, offset=12))
    assert consumer._new_offset(tp) is None  # never past the given-up records
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 10}]
    assert consumer._new_offset(tp) is None
    assert seeks == [{tp: 10}]  # nothing read since the seek: no second one
    _fetched(monkeypatch, [[Msg(tp=tp, offset=10), Msg(tp=tp, offset=11)]])
    assert await _read(consumer) == [10, 11]  # then records 11 and 12 were lost again
    assert consumer._new_offset(tp) is None
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 10}, {tp: 10}]
    consumer._acked[tp] = [10, 11, 12, 13, 14]  # read again and processed
    consumer._acked_index[tp] = set(consumer._acked[tp])
    assert consumer._new_offset(tp) == 15
    assert consumer._unprocessed == {}


async def test_the_last_record_of_a_partition_given_up_is_read_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is acknowledged after it, so only the commit's sweep can notice it."""
    consumer, tp = _offsets_consumer(tmp_path, committed=20, acked=[])
    other = TP("ticket-requests", 1)
    consumer._committed_offset[other] = 30
    seeks = _record_seeks(consumer, monkeypatch, tp, other)
    consumer.note_unprocessed(Msg(tp=tp, offset=20))
    consumer.note_unprocessed(Msg(tp=other, offset=25))  # committed since by another owner
    in_flight = _in_flight(consumer, tp, 20)
    consumer._sweep_unprocessed()
    assert seeks == [] and other not in consumer._unprocessed  # 20 is still being processed
    in_flight.acked = True
    consumer.app.flow_control.suspend()
    consumer._sweep_unprocessed()
    assert seeks == []  # not during a rebalance (it seeks to the commit point anyway)
    consumer.app.flow_control.resume()
    await _sweep(consumer)
    assert seeks == [{tp: 20}]


async def test_collect_sees_only_the_records_buffered_inside_the_block() -> None:
    channel = _SlowChannel()
    buffer = await _started(EventProProducerBuffer())
    try:
        before = _record(channel, "before")
        buffer.put(before)  # type: ignore[arg-type]
        with buffer.collect() as mine:
            inside = _record(channel, "inside")
            buffer.put(inside)  # type: ignore[arg-type]
        buffer.put(_record(channel, "after"))  # type: ignore[arg-type]
        assert mine == [inside]
    finally:
        await _stop_after(buffer, channel, 3)


def _ends(consumer: Any, monkeypatch: pytest.MonkeyPatch, ends: dict[TP, int]) -> list[set[TP]]:
    """The partitions' end offsets as ``highwaters`` answers them; the returned list gets the
    partitions asked about, one set per call."""
    asked: list[set[TP]] = []

    async def highwaters(*tps: TP) -> dict[TP, int]:
        asked.append(set(tps))
        return {tp: ends[tp] for tp in tps}

    monkeypatch.setattr(consumer, "highwaters", highwaters)
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: True)
    return asked


async def test_a_partition_whose_records_no_stream_takes_is_resumed_and_read_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen in a chaos run: after a broker restart three partitions stopped, no record of them
    in flight, acknowledged or given up, so nothing else noticed."""
    monkeypatch.setattr(transport_module, "STALLED_READ_S", 0.0)
    consumer, tp = _offsets_consumer(tmp_path, committed=24, acked=[])
    busy, done, idle = TP("ticket-requests", 1), TP("ticket-requests", 2), TP("payments", 0)
    for other, committed in ((busy, 5), (done, 7), (idle, 3)):
        consumer._committed_offset[other] = committed
    consumer._acked[done] = [8]  # acknowledged, to be committed: not idle
    seeks = _record_seeks(consumer, monkeypatch, tp, busy, done, idle)
    asked = _ends(consumer, monkeypatch, {tp: 50, busy: 9, done: 9, idle: 3})
    in_flight = _in_flight(consumer, busy, 5)
    consumer.pause_partitions({tp})

    await consumer._read_stalled_again()  # first sight starts the clock
    assert asked == [] and seeks == []
    with caplog.at_level(logging.INFO, logger="eventpro.transport"):
        await consumer._read_stalled_again()
        await asyncio.gather(*consumer._seek_tasks)
    assert asked == [{tp, idle}]  # idle has nothing past its commit point
    assert seeks == [{tp: 24}]
    assert tp not in consumer._paused_partitions
    assert "offsets 24..49 were not taken by a stream" in caplog.text
    assert not in_flight.acked

    _fetched(monkeypatch, [[Msg(tp=tp, offset=24)]])
    with caplog.at_level(logging.WARNING, logger="eventpro.transport"):
        assert await _read(consumer) == [24]
    assert "had stalled: offsets 24..49" in caplog.text


async def test_transaction_markers_past_the_commit_point_are_read_again_only_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under exactly_once a partition ends with a commit marker no stream ever sees."""
    monkeypatch.setattr(transport_module, "STALLED_READ_S", 0.0)
    consumer, tp = _offsets_consumer(tmp_path, committed=30, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    _ends(consumer, monkeypatch, {tp: 31})
    for _ in range(4):
        await consumer._read_stalled_again()
        await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 30}]  # the read found nothing: not again
    _ends(consumer, monkeypatch, {tp: 33})  # a new record behind the marker, not taken
    await consumer._read_stalled_again()
    await consumer._read_stalled_again()
    await asyncio.gather(*consumer._seek_tasks)
    assert seeks == [{tp: 30}, {tp: 30}]


async def test_a_commit_goes_on_when_the_end_offsets_cannot_be_had(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker may be restarting: the check is skipped, never the commit."""
    monkeypatch.setattr(transport_module, "STALLED_READ_S", 0.0)
    consumer, tp = _offsets_consumer(tmp_path, committed=24, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: True)

    async def highwaters(*tps: TP) -> dict[TP, int]:
        raise ConnectionError("broker down")

    monkeypatch.setattr(consumer, "highwaters", highwaters)
    await consumer._read_stalled_again()
    await consumer._read_stalled_again()  # due now: asks, fails, returns
    assert seeks == [] and tp in consumer._idle_since


async def test_no_partition_is_read_again_while_the_tables_recover(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery pauses the stream partitions on purpose while it reads the changelogs."""
    monkeypatch.setattr(transport_module, "STALLED_READ_S", 0.0)
    consumer, tp = _offsets_consumer(tmp_path, committed=24, acked=[])
    seeks = _record_seeks(consumer, monkeypatch, tp)
    asked = _ends(consumer, monkeypatch, {tp: 50})
    consumer.pause_partitions({tp})
    consumer.app.in_recovery = True
    for _ in range(3):
        await consumer._read_stalled_again()
    assert asked == [] and seeks == [] and tp in consumer._paused_partitions


async def test_an_accepted_heartbeat_confirms_the_group_lease_from_its_send_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eventpro.membership import GroupLease

    now = [100.0]
    lease = GroupLease(lambda: now[0])
    lease.start(10.0)
    monkeypatch.setattr(transport_module, "group_lease", lease)
    answers = [False, True]

    async def do_heartbeat() -> bool:
        now[0] += 4.0  # the coordinator took 4 s to answer
        return answers.pop(0)

    heartbeat = transport_module._confirming(do_heartbeat)
    assert await heartbeat() is False
    assert lease.unconfirmed_for() == 0.0  # a refused heartbeat confirms nothing
    assert await heartbeat() is True
    assert lease.unconfirmed_for() == 4.0  # counted from when it was sent, not answered


async def test_wait_empty_goes_on_when_the_last_commit_never_finishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a broker restart the coordinator never answered and the worker ignored SIGTERM."""
    consumer = _StuckConsumer(rebalance_timeout=2.0)
    consumer._unacked_messages.clear()
    never = asyncio.get_running_loop().create_future()

    async def commit_and_end_transactions() -> None:
        consumer.final_commits += 1
        await never

    consumer.commit_and_end_transactions = commit_and_end_transactions  # type: ignore[method-assign]
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="eventpro.transport"):
        await asyncio.wait_for(EventProConsumer.wait_empty(consumer), timeout=10)  # type: ignore[arg-type]
    assert wait_empty_limit(2.0) <= time.monotonic() - began < wait_empty_limit(2.0) + 2
    assert consumer.final_commits == 1
    assert "the last commit did not finish in time" in caplog.text
    assert not never.cancelled()  # shielded: not cut off half-way
    never.set_result(None)


async def test_wait_empty_stops_waiting_for_a_commit_that_hangs_at_its_deadline() -> None:
    consumer = _StuckConsumer(rebalance_timeout=2.0)
    release = asyncio.Event()

    async def commit() -> bool:
        consumer.commits += 1
        await release.wait()
        return False

    consumer.commit = commit  # type: ignore[method-assign]
    began = time.monotonic()
    await asyncio.wait_for(EventProConsumer.wait_empty(consumer), timeout=10)  # type: ignore[arg-type]
    assert time.monotonic() - began < 2 * wait_empty_limit(2.0) + 2
    assert consumer.commits == 1 and consumer.final_commits == 1
    release.set()
