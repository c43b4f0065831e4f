"""Malformed, oversized and unknown requests: an error answer or that one connection closed,
other clients unaffected, nothing on disk damaged."""

from __future__ import annotations

import asyncio
import datetime
import io
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsV0
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v5.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.produce.v7.response import ProduceResponse
from kio.schema.request_header.v1.header import RequestHeader
from kio.serial import entity_reader, entity_writer
from support.batches import make_batch

from eventpro.broker.server import Broker, running_broker


def frame(request: Any, correlation_id: int = 1, api_version: int | None = None) -> bytes:
    buffer = io.BytesIO()
    header = RequestHeader(
        request_api_key=request.__api_key__,
        request_api_version=request.__version__ if api_version is None else api_version,
        correlation_id=correlation_id,
        client_id="bad-input-test",
    )
    entity_writer(RequestHeader)(buffer, header)
    entity_writer(type(request))(buffer, request)
    body = buffer.getvalue()
    return struct.pack(">i", len(body)) + body


async def roundtrip(broker: Broker, data: bytes, response_cls: type | None) -> Any:
    """Send raw bytes; return the decoded response, or None if the broker closed the connection."""
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    try:
        writer.write(data)
        writer.write_eof()  # a truncated frame must not leave the broker waiting forever
        await writer.drain()
        try:
            size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 10))[0]
            payload = await asyncio.wait_for(reader.readexactly(size), 10)
        except asyncio.IncompleteReadError:
            return None
        if response_cls is None:
            return payload
        header_cls = response_cls.__header_schema__
        _, offset = entity_reader(header_cls)(payload, 0)
        return entity_reader(response_cls)(payload, offset)[0]
    finally:
        writer.close()


def metadata_frame(topic: str | None = None) -> bytes:
    topics = None if topic is None else (MetadataRequestTopic(name=topic),)
    return frame(MetadataRequest(topics=topics, allow_auto_topic_creation=False))


def record_batch(values: list[bytes]) -> bytes:
    return make_batch(values)


def produce_frame(topic: str, records: bytes) -> bytes:
    return frame(
        ProduceRequest(
            transactional_id=None,
            acks=-1,
            timeout=datetime.timedelta(seconds=5),
            topic_data=(
                TopicProduceData(
                    name=topic, partition_data=(PartitionProduceData(index=0, records=records),)
                ),
            ),
        )
    )


@pytest.fixture()
async def broker() -> AsyncIterator[Broker]:
    async with running_broker(max_frame_bytes=1 << 20) as running:
        running.topics.create_topic("t", 1)
        yield running


async def assert_still_serving(broker: Broker) -> None:
    from kio.schema.metadata.v5.response import MetadataResponse

    response = await roundtrip(broker, metadata_frame("t"), MetadataResponse)
    assert response is not None and response.topics[0].error_code == ErrorCode.none


async def test_oversized_frame_closes_only_that_connection(broker: Broker) -> None:
    assert await roundtrip(broker, struct.pack(">i", 50 << 20) + b"x" * 64, None) is None
    await assert_still_serving(broker)


async def test_negative_and_tiny_sizes_close_the_connection(broker: Broker) -> None:
    assert await roundtrip(broker, struct.pack(">i", -5), None) is None
    assert await roundtrip(broker, struct.pack(">i", 3) + b"abc", None) is None
    await assert_still_serving(broker)


async def test_truncated_frame_then_disconnect(broker: Broker) -> None:
    data = metadata_frame("t")
    assert await roundtrip(broker, data[: len(data) // 2], None) is None
    await assert_still_serving(broker)


async def test_unknown_api_key_closes_connection(broker: Broker) -> None:
    body = struct.pack(">hhi", 999, 0, 7) + b"\x00\x00"
    assert await roundtrip(broker, struct.pack(">i", len(body)) + body, None) is None
    await assert_still_serving(broker)


async def test_unsupported_api_versions_version_gets_v0_error_answer(broker: Broker) -> None:
    body = struct.pack(">hhi", 18, 42, 9) + b"\x00\x00" + b"\x00" * 8
    response = await roundtrip(broker, struct.pack(">i", len(body)) + body, ApiVersionsV0)
    assert response.error_code == ErrorCode.unsupported_version
    assert {k.api_key for k in response.api_keys} >= {0, 1, 2, 3, 18, 19}


async def test_pipelined_requests_are_answered_in_order(broker: Broker) -> None:
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    try:
        writer.write(
            b"".join(
                frame(
                    MetadataRequest(topics=None, allow_auto_topic_creation=False), correlation_id=i
                )
                for i in range(20)
            )
        )
        await writer.drain()
        seen = []
        for _ in range(20):
            size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 10))[0]
            payload = await reader.readexactly(size)
            seen.append(struct.unpack(">i", payload[:4])[0])
        assert seen == list(range(20))
    finally:
        writer.close()


async def test_batch_with_wrong_crc_is_rejected_and_not_written(broker: Broker) -> None:
    good = record_batch([b"a", b"b"])
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    response = await roundtrip(broker, produce_frame("t", bytes(bad)), ProduceResponse)
    part = response.responses[0].partition_responses[0]
    assert part.error_code == ErrorCode.corrupt_message
    assert broker.topics.log("t", 0).end_offset == 0

    response = await roundtrip(broker, produce_frame("t", good), ProduceResponse)
    assert response.responses[0].partition_responses[0].error_code == ErrorCode.none
    assert broker.topics.log("t", 0).end_offset == 2


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
async def test_mutated_real_frames_never_break_the_broker(
    broker: Broker, data: st.DataObject
) -> None:
    seed = data.draw(
        st.sampled_from([metadata_frame("t"), produce_frame("t", record_batch([b"x", b"yy"]))])
    )
    mutated = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(4, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(5, len(mutated)))
    payload = bytes(mutated[:cut])
    payload = struct.pack(">i", len(payload) - 4) + payload[4:]
    end_before = broker.topics.log("t", 0).end_offset
    await roundtrip(broker, payload, None)
    # A mutated produce may legitimately append a batch whose CRC still holds; never a torn one.
    end_after = broker.topics.log("t", 0).end_offset
    assert end_after in (end_before, end_before + 2)
    await assert_still_serving(broker)
