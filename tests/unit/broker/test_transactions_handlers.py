"""Transaction API handlers on an in-process broker: kio requests of the versions clients send
in, wire-valid responses out; read_committed Fetch/ListOffsets, OffsetFetch require_stable,
transactional Produce checks and version-dependent fencing codes."""

from __future__ import annotations

import datetime
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from support.batches import make_batch

from eventpro.broker.data_handlers import (
    handle_api_versions,
    handle_fetch,
    handle_init_producer_id,
    handle_list_offsets,
    handle_produce,
)
from eventpro.broker.group_handlers import handle_offset_fetch
from eventpro.broker.protocol import RequestContext, build, entity
from eventpro.broker.records import ATTR_TRANSACTIONAL, control_batch
from eventpro.broker.server import Broker, BrokerConfig
from eventpro.broker.txn_handlers import (
    handle_add_offsets_to_txn,
    handle_add_partitions_to_txn,
    handle_end_txn,
    handle_txn_offset_commit,
)

TOPIC = "tx-out"
SOURCE = "tx-in"
GROUP = "tx-group"
TID = "tx-handlers"


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    node = Broker(BrokerConfig(data_dir=tmp_path, port=0))
    await node.start()
    node.topics.create_topic(TOPIC, 2)
    try:
        yield node
    finally:
        await node.stop()


def request(api_key: int, version: int, /, **fields: Any) -> Any:
    return build(load_request_schema(api_key, version), **fields)


def nested(api_key: int, version: int, name: str, /, **fields: Any) -> Any:
    return build(entity(load_request_schema(api_key, version), name), **fields)


async def call(broker: Broker, handler: Any, req: Any) -> Any:
    ctx = RequestContext(req.__api_key__, req.__version__, 1, "test", "127.0.0.1", broker)
    response = await handler(ctx, req)
    buffer = io.BytesIO()
    entity_writer(type(response))(buffer, response)
    decoded, size = entity_reader(type(response))(buffer.getvalue(), 0)
    assert size == len(buffer.getvalue())
    return decoded


async def init_pid(broker: Broker, version: int, **extra: Any) -> Any:
    return await call(
        broker,
        handle_init_producer_id,
        request(
            22,
            version,
            transactional_id=TID,
            transaction_timeout=datetime.timedelta(seconds=30),
            **extra,
        ),
    )


async def add_partitions(broker: Broker, version: int, pid: int, epoch: int, *parts: int) -> Any:
    topic = nested(24, version, "AddPartitionsToTxnTopic", name=TOPIC, partitions=parts)
    return await call(
        broker,
        handle_add_partitions_to_txn,
        request(
            24,
            version,
            v3_and_below_transactional_id=TID,
            v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=(topic,),
        ),
    )


async def produce(broker: Broker, partition: int, records: bytes) -> Any:
    data = nested(0, 7, "PartitionProduceData", index=partition, records=records)
    topic = nested(0, 7, "TopicProduceData", name=TOPIC, partition_data=(data,))
    response = await call(
        broker,
        handle_produce,
        request(
            0,
            7,
            transactional_id=TID,
            acks=-1,
            timeout=datetime.timedelta(seconds=5),
            topic_data=(topic,),
        ),
    )
    return response.responses[0].partition_responses[0]


def txn_records(pid: int, epoch: int, seq: int, n: int = 2) -> bytes:
    return make_batch(
        [b"v"] * n,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        attributes=ATTR_TRANSACTIONAL,
    )


async def fetch(broker: Broker, isolation_level: int, partition: int = 0) -> Any:
    fp = nested(
        1, 11, "FetchPartition", partition=partition, fetch_offset=0, partition_max_bytes=1 << 20
    )
    topic = nested(1, 11, "FetchTopic", topic=TOPIC, partitions=(fp,))
    response = await call(
        broker,
        handle_fetch,
        request(
            1,
            11,
            max_wait=datetime.timedelta(0),
            min_bytes=1,
            isolation_level=isolation_level,
            topics=(topic,),
            forgotten_topics_data=(),
        ),
    )
    return response.responses[0].partitions[0]


async def latest(broker: Broker, isolation_level: int) -> int:
    part = nested(2, 2, "ListOffsetsPartition", partition_index=0, timestamp=-1)
    topic = nested(2, 2, "ListOffsetsTopic", name=TOPIC, partitions=(part,))
    response = await call(
        broker,
        handle_list_offsets,
        request(2, 2, replica_id=-1, isolation_level=isolation_level, topics=(topic,)),
    )
    return int(response.topics[0].partitions[0].offset)


async def offset_fetch_v7(broker: Broker, require_stable: bool) -> Any:
    topic = nested(9, 7, "OffsetFetchRequestTopic", name=SOURCE, partition_indexes=(0,))
    response = await call(
        broker,
        handle_offset_fetch,
        request(9, 7, group_id=GROUP, topics=(topic,), require_stable=require_stable),
    )
    return response.topics[0].partitions[0]


async def test_api_versions_advertise_the_transaction_apis(broker: Broker) -> None:
    response = await call(broker, handle_api_versions, request(18, 0))
    ranges = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in response.api_keys}
    assert {key: ranges[key] for key in (22, 24, 25, 26, 28)} == {
        22: (0, 4),
        24: (0, 3),
        25: (0, 3),
        26: (0, 3),
        28: (0, 3),
    }


async def test_transaction_through_the_handlers(broker: Broker) -> None:
    init = await init_pid(broker, 0)
    assert init.error_code is ErrorCode.none
    pid, epoch = int(init.producer_id), int(init.producer_epoch)
    added = await add_partitions(broker, 0, pid, epoch, 0)
    assert added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code is (
        ErrorCode.none
    )
    written = await produce(broker, 0, txn_records(pid, epoch, 0))
    assert (written.error_code, written.base_offset) == (ErrorCode.none, 0)

    pending = await fetch(broker, isolation_level=1)
    assert (pending.high_watermark, pending.last_stable_offset) == (2, 0)
    assert bytes(pending.records or b"") == b""
    assert bytes((await fetch(broker, isolation_level=0)).records or b"") != b""
    assert (await latest(broker, 1), await latest(broker, 0)) == (0, 2)

    add_offsets = await call(
        broker,
        handle_add_offsets_to_txn,
        request(25, 0, transactional_id=TID, producer_id=pid, producer_epoch=epoch, group_id=GROUP),
    )
    assert add_offsets.error_code is ErrorCode.none
    part = nested(
        28,
        3,
        "TxnOffsetCommitRequestPartition",
        partition_index=0,
        committed_offset=17,
        committed_leader_epoch=-1,
        committed_metadata=None,
    )
    topic = nested(28, 3, "TxnOffsetCommitRequestTopic", name=SOURCE, partitions=(part,))
    staged = await call(
        broker,
        handle_txn_offset_commit,
        request(
            28,
            3,
            transactional_id=TID,
            group_id=GROUP,
            producer_id=pid,
            producer_epoch=epoch,
            generation_id=-1,
            member_id="",
            group_instance_id=None,
            topics=(topic,),
        ),
    )
    assert staged.topics[0].partitions[0].error_code is ErrorCode.none
    unstable = await offset_fetch_v7(broker, require_stable=True)
    assert (unstable.error_code, unstable.committed_offset) == (
        ErrorCode.unstable_offset_commit,
        -1,
    )
    assert (await offset_fetch_v7(broker, require_stable=False)).error_code is ErrorCode.none

    ended = await call(
        broker,
        handle_end_txn,
        request(
            26, 1, transactional_id=TID, producer_id=pid, producer_epoch=epoch, committed=False
        ),
    )
    assert ended.error_code is ErrorCode.none
    aborted = await fetch(broker, isolation_level=1)
    assert (aborted.high_watermark, aborted.last_stable_offset) == (3, 3)
    assert [(int(a.producer_id), int(a.first_offset)) for a in aborted.aborted_transactions] == [
        (pid, 0)
    ]
    assert (await fetch(broker, isolation_level=0)).aborted_transactions == ()
    assert (await offset_fetch_v7(broker, require_stable=True)).committed_offset == -1


async def test_fenced_codes_follow_the_request_version(broker: Broker) -> None:
    first = await init_pid(broker, 0)
    pid, old_epoch = int(first.producer_id), int(first.producer_epoch)
    second = await init_pid(broker, 4, producer_id=-1, producer_epoch=-1)
    assert int(second.producer_epoch) == old_epoch + 1
    v0 = await add_partitions(broker, 0, pid, old_epoch, 0)
    v3 = await add_partitions(broker, 3, pid, old_epoch, 0)
    assert v0.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code is (
        ErrorCode.invalid_producer_epoch
    )
    assert v3.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code is (
        ErrorCode.producer_fenced
    )
    stale_v4 = await init_pid(broker, 4, producer_id=pid, producer_epoch=old_epoch)
    assert stale_v4.error_code is ErrorCode.producer_fenced
    stale_v3 = await init_pid(broker, 3, producer_id=pid, producer_epoch=old_epoch)
    assert stale_v3.error_code is ErrorCode.invalid_producer_epoch


async def test_transactional_produce_outside_the_transaction_is_refused(broker: Broker) -> None:
    init = await init_pid(broker, 0)
    pid, epoch = int(init.producer_id), int(init.producer_epoch)
    await add_partitions(broker, 0, pid, epoch, 0)
    outside = await produce(broker, 1, txn_records(pid, epoch, 0))
    assert outside.error_code is ErrorCode.invalid_txn_state
    forged_marker = await produce(broker, 0, control_batch(pid, epoch, commit=True))
    assert forged_marker.error_code is ErrorCode.invalid_record
    assert broker.topics.log(TOPIC, 0).end_offset == broker.topics.log(TOPIC, 1).end_offset == 0
