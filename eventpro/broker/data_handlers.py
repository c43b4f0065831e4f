"""Handlers for the data-plane and admin APIs: ApiVersions, Metadata, Produce, Fetch, ListOffsets,
CreateTopics, DeleteTopics and InitProducerId.

Each handler serves every version it is registered for: it reads the fields all versions share and
builds the response with :func:`~eventpro.broker.protocol.build`, which drops fields the requested
version does not have.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from eventpro.broker.errors import BrokerError, TopicExistsError, UnknownTopicError
from eventpro.broker.protocol import (
    ApiSpec,
    RequestContext,
    build,
    entity,
    has_field,
    response_class,
)
from eventpro.broker.records import ATTR_CONTROL, ATTR_TRANSACTIONAL, H_ATTR, H_PEPOCH, H_PID
from eventpro.broker.records import HEADER as BATCH_HEADER

__all__ = ("DATA_APIS", "unsupported_api_versions_response")

logger = logging.getLogger(__name__)

NO_THROTTLE = datetime.timedelta(0)
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3
READ_COMMITTED = 1


def _api_version_entries(cls: type, apis: dict[int, ApiSpec]) -> tuple[Any, ...]:
    version_cls = entity(cls, "ApiVersion")
    return tuple(
        version_cls(api_key=s.api_key, min_version=s.min_version, max_version=s.max_version)
        for s in sorted(apis.values(), key=lambda s: s.api_key)
    )


async def handle_api_versions(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    return build(
        cls,
        error_code=ErrorCode.none,
        api_keys=_api_version_entries(cls, ctx.broker.apis),
        throttle_time=NO_THROTTLE,
    )


def unsupported_api_versions_response(broker: Any) -> Any:
    """The v0 ApiVersions answer Kafka sends to a version it does not know, so clients downgrade."""
    from kio.schema.api_versions.v0.response import ApiVersionsResponse

    return ApiVersionsResponse(
        error_code=ErrorCode.unsupported_version,
        api_keys=_api_version_entries(ApiVersionsResponse, broker.apis),
    )


# --- Metadata -------------------------------------------------------------------------------


def _metadata_topic(cls: type, ctx: RequestContext, name: str | None, topic_id: Any) -> Any:
    topic_cls = entity(cls, "MetadataResponseTopic")
    partition_cls = entity(cls, "MetadataResponsePartition")
    store = ctx.broker.topics
    info = store.topic_by_id(topic_id) if topic_id is not None and name is None else None
    if info is None and name is not None:
        info = store.topic(name)
    if info is None:
        return build(
            topic_cls,
            error_code=ErrorCode.unknown_topic_or_partition,
            name=name,
            topic_id=topic_id or uuid.UUID(int=0),
            is_internal=False,
            partitions=(),
            topic_authorized_operations=-2147483648,
        )
    node = ctx.broker.node_id
    partitions = tuple(
        build(
            partition_cls,
            error_code=ErrorCode.none,
            partition_index=index,
            leader_id=node,
            leader_epoch=0,
            replica_nodes=(node,),
            isr_nodes=(node,),
            offline_replicas=(),
        )
        for index in range(info.partitions)
    )
    return build(
        topic_cls,
        error_code=ErrorCode.none,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=False,
        partitions=partitions,
        topic_authorized_operations=-2147483648,
    )


async def handle_metadata(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    broker = ctx.broker
    store = broker.topics
    requested = request.topics
    if requested is None or (request.__version__ == 0 and not requested):
        topics = tuple(_metadata_topic(cls, ctx, info.name, None) for info in store.topics())
    else:
        allow_create = getattr(request, "allow_auto_topic_creation", True)
        topics_list = []
        for wanted in requested:
            name = wanted.name
            topic_id = getattr(wanted, "topic_id", None)
            if (
                name is not None
                and store.topic(name) is None
                and allow_create
                and broker.config.auto_create_topics
            ):
                try:
                    store.create_topic(name, broker.config.default_partitions)
                    logger.info("auto-created topic %r for %s", name, ctx.client_id)
                except TopicExistsError:
                    pass
                except BrokerError as exc:
                    logger.warning("cannot auto-create topic %r: %s", name, exc)
                    topic_cls = entity(cls, "MetadataResponseTopic")
                    topics_list.append(
                        build(
                            topic_cls,
                            error_code=exc.error_code,
                            name=name,
                            topic_id=uuid.UUID(int=0),
                            is_internal=False,
                            partitions=(),
                            topic_authorized_operations=-2147483648,
                        )
                    )
                    continue
            topics_list.append(_metadata_topic(cls, ctx, name, topic_id))
        topics = tuple(topics_list)
    broker_cls = entity(cls, "MetadataResponseBroker")
    return build(
        cls,
        throttle_time=NO_THROTTLE,
        brokers=(
            build(
                broker_cls,
                node_id=broker.node_id,
                host=broker.advertised_host,
                port=broker.port,
                rack=None,
            ),
        ),
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        topics=topics,
        cluster_authorized_operations=-2147483648,
    )


# --- Produce --------------------------------------------------------------------------------


async def handle_produce(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    topic_cls = entity(cls, "TopicProduceResponse")
    part_cls = entity(cls, "PartitionProduceResponse")
    store = ctx.broker.topics
    now_ms = int(time.time() * 1000)
    wrote = False
    topic_responses = []
    for topic in request.topic_data:
        parts = []
        for pdata in topic.partition_data:
            error = ErrorCode.none
            base_offset = -1
            log_start = -1
            message: str | None = None
            try:
                log = store.log(topic.name, pdata.index)
                records = bytes(pdata.records or b"")
                txn_error = _transactional_produce_error(ctx, topic.name, pdata.index, records)
                if txn_error is not None:
                    error = txn_error
                    message = "transactional batch outside the producer's ongoing transaction"
                    logger.warning(
                        "produce to %s[%d] from %s rejected: %s (%s)",
                        topic.name,
                        pdata.index,
                        ctx.client_id,
                        message,
                        txn_error.name,
                    )
                    parts.append(
                        build(
                            part_cls,
                            index=pdata.index,
                            error_code=error,
                            base_offset=-1,
                            log_append_time=None,
                            log_start_offset=-1,
                            record_errors=(),
                            error_message=message,
                        )
                    )
                    continue
                result = log.append(records, now_ms=now_ms)
                base_offset = result.base_offset
                log_start = log.log_start_offset
                wrote = wrote or not result.duplicate
            except BrokerError as exc:
                error = exc.error_code
                message = str(exc)
                logger.warning(
                    "produce to %s[%d] from %s rejected: %s",
                    topic.name,
                    pdata.index,
                    ctx.client_id,
                    exc,
                )
            parts.append(
                build(
                    part_cls,
                    index=pdata.index,
                    error_code=error,
                    base_offset=base_offset,
                    log_append_time=None,
                    log_start_offset=log_start,
                    record_errors=(),
                    error_message=message,
                )
            )
        topic_responses.append(build(topic_cls, name=topic.name, partition_responses=tuple(parts)))
    if wrote:
        ctx.broker.notify_data()
    if request.acks == 0:
        return None
    return build(cls, responses=tuple(topic_responses), throttle_time=NO_THROTTLE)


def _transactional_produce_error(
    ctx: RequestContext, topic: str, partition: int, records: bytes
) -> ErrorCode | None:
    """Transactional batches must belong to a partition of the producer's ongoing transaction.

    Control batches are written only by the coordinator; a client sending one is refused.
    """
    if len(records) < BATCH_HEADER.size:
        return None
    header = BATCH_HEADER.unpack_from(records, 0)
    attrs = header[H_ATTR]
    if not attrs & ATTR_TRANSACTIONAL:
        return None
    if attrs & ATTR_CONTROL:
        return ErrorCode.invalid_record
    error = ctx.broker.transactions.check_produce(
        header[H_PID], header[H_PEPOCH], (topic, partition)
    )
    return None if error is ErrorCode.none else error


# --- Fetch ----------------------------------------------------------------------------------


def _fetch_topic_name(ctx: RequestContext, topic: Any) -> tuple[str | None, Any]:
    """(name, topic_id) of a fetched topic: v13+ name topics by id only."""
    if has_field(type(topic), "topic_id"):
        info = ctx.broker.topics.topic_by_id(topic.topic_id)
        return (info.name if info else None), topic.topic_id
    return topic.topic, None


def _collect_fetch(
    ctx: RequestContext, request: Any, cls: type
) -> tuple[tuple[Any, ...], int, bool]:
    topic_cls = entity(cls, "FetchableTopicResponse")
    part_cls = entity(cls, "PartitionData")
    store = ctx.broker.topics
    budget = max(int(request.max_bytes), 1)
    total = 0
    errors = False
    aborted_cls = (
        entity(cls, "AbortedTransaction") if has_field(part_cls, "aborted_transactions") else None
    )
    committed_only = int(getattr(request, "isolation_level", 0)) == READ_COMMITTED
    topics = []
    for topic in request.topics:
        name, topic_id = _fetch_topic_name(ctx, topic)
        parts = []
        for fp in topic.partitions:
            error = ErrorCode.none
            records = b""
            high_watermark = log_start = stable = -1
            aborted: tuple[Any, ...] = ()
            try:
                if name is None:
                    raise UnknownTopicError(f"unknown topic id {topic_id}")
                log = store.log(name, fp.partition)
                high_watermark = log.end_offset
                stable = log.last_stable_offset
                log_start = log.log_start_offset
                limit = min(int(fp.partition_max_bytes), budget - total)
                fetch_offset = int(fp.fetch_offset)
                if limit > 0 or total == 0:
                    records = log.read(
                        fetch_offset, max(limit, 1), upper=stable if committed_only else None
                    )
                if committed_only and records and aborted_cls is not None:
                    aborted = tuple(
                        aborted_cls(producer_id=pid, first_offset=first)
                        for pid, first in log.aborted_transactions(
                            fetch_offset, _end_of_batches(records)
                        )
                    )
            except BrokerError as exc:
                error = exc.error_code
                errors = True
                if error == ErrorCode.unknown_topic_or_partition and topic_id is not None:
                    error = ErrorCode.unknown_topic_id
            total += len(records)
            parts.append(
                build(
                    part_cls,
                    partition_index=fp.partition,
                    error_code=error,
                    high_watermark=high_watermark,
                    last_stable_offset=stable,
                    log_start_offset=log_start,
                    aborted_transactions=None if error else aborted,
                    preferred_read_replica=-1,
                    records=records,
                )
            )
        topics.append(
            build(topic_cls, topic=name or "", topic_id=topic_id, partitions=tuple(parts))
        )
    return tuple(topics), total, errors


def _end_of_batches(records: bytes) -> int:
    """The offset after the last batch in ``records`` (whole batches)."""
    pos = 0
    last = -1
    while pos + BATCH_HEADER.size <= len(records):
        header = BATCH_HEADER.unpack_from(records, pos)
        last = header[0] + header[6]
        pos += 12 + header[1]
    return last + 1


async def handle_fetch(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    max_wait = request.max_wait.total_seconds()
    deadline = time.monotonic() + max(max_wait, 0.0)
    while True:
        topics, total, errors = _collect_fetch(ctx, request, cls)
        remaining = deadline - time.monotonic()
        if total >= max(int(request.min_bytes), 1) or errors or remaining <= 0:
            break
        await ctx.broker.wait_for_data(remaining)
    return build(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        session_id=0,
        responses=topics,
        node_endpoints=(),
    )


# --- ListOffsets ----------------------------------------------------------------------------


def _max_timestamp_offset(log: Any) -> tuple[int, int]:
    """(offset, timestamp) of the batch with the largest timestamp: a rare tooling query, so a
    scan of the batch headers is acceptable."""
    best_offset, best_ts = -1, -1
    for batch in log.batches_from(log.log_start_offset):
        if batch.max_timestamp >= best_ts:
            best_offset, best_ts = batch.last_offset, batch.max_timestamp
    return best_offset, best_ts


async def handle_list_offsets(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    topic_cls = entity(cls, "ListOffsetsTopicResponse")
    part_cls = entity(cls, "ListOffsetsPartitionResponse")
    store = ctx.broker.topics
    committed_only = int(getattr(request, "isolation_level", 0)) == READ_COMMITTED
    topics = []
    for topic in request.topics:
        parts = []
        for part in topic.partitions:
            error = ErrorCode.none
            offset = timestamp = -1
            try:
                log = store.log(topic.name, part.partition_index)
                if part.timestamp == LATEST_TIMESTAMP:
                    offset = log.last_stable_offset if committed_only else log.end_offset
                elif part.timestamp == EARLIEST_TIMESTAMP:
                    offset = log.log_start_offset
                elif part.timestamp == MAX_TIMESTAMP:
                    offset, timestamp = _max_timestamp_offset(log)
                else:
                    found = log.offset_for_timestamp(int(part.timestamp))
                    if found is not None:
                        offset, timestamp = found
            except BrokerError as exc:
                error = exc.error_code
            parts.append(
                build(
                    part_cls,
                    partition_index=part.partition_index,
                    error_code=error,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=0,
                    old_style_offsets=(offset,) if offset >= 0 else (),
                )
            )
        topics.append(build(topic_cls, name=topic.name, partitions=tuple(parts)))
    return build(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))


# --- CreateTopics / DeleteTopics ------------------------------------------------------------


async def handle_create_topics(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    result_cls = entity(cls, "CreatableTopicResult")
    broker = ctx.broker
    results = []
    for topic in request.topics:
        partitions = int(topic.num_partitions)
        if partitions == -1:
            partitions = broker.config.default_partitions
        error = ErrorCode.none
        message: str | None = None
        topic_id = None
        configs = {c.name: c.value for c in topic.configs}
        if int(topic.replication_factor) not in (-1, 1):
            error = ErrorCode.invalid_replication_factor
            message = (
                f"replication factor {topic.replication_factor} is impossible on the embedded "
                "single-node broker; use 1 (EVENTPRO_REPLICATION_FACTOR=1)"
            )
        elif topic.assignments:
            error = ErrorCode.invalid_request
            message = "manual replica assignments are not supported"
        elif request.validate_only:
            if broker.topics.topic(topic.name) is not None:
                error, message = ErrorCode.topic_already_exists, f"topic {topic.name!r} exists"
        else:
            try:
                info = broker.topics.create_topic(topic.name, partitions, configs)
                topic_id = info.topic_id
                logger.info(
                    "created topic %r (%d partitions, %s) for %s",
                    topic.name,
                    partitions,
                    configs or "default configs",
                    ctx.client_id,
                )
            except BrokerError as exc:
                error, message = exc.error_code, str(exc)
        results.append(
            build(
                result_cls,
                name=topic.name,
                topic_id=topic_id or uuid.UUID(int=0),
                error_code=error,
                error_message=message,
                topic_config_error_code=0,
                num_partitions=partitions if error == ErrorCode.none else -1,
                replication_factor=1 if error == ErrorCode.none else -1,
                configs=None,
            )
        )
    return build(cls, throttle_time=NO_THROTTLE, topics=tuple(results))


async def handle_delete_topics(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    result_cls = entity(cls, "DeletableTopicResult")
    broker = ctx.broker
    if has_field(type(request), "topic_names"):
        wanted = [(name, None) for name in request.topic_names]
    else:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    results = []
    for name, topic_id in wanted:
        error = ErrorCode.none
        message: str | None = None
        if name is None and topic_id is not None:
            info = broker.topics.topic_by_id(topic_id)
            name = info.name if info else None
        try:
            if name is None:
                raise UnknownTopicError(f"unknown topic id {topic_id}")
            broker.topics.delete_topic(name)
            broker.groups.delete_topic_offsets(name)
            logger.info("deleted topic %r for %s", name, ctx.client_id)
        except BrokerError as exc:
            error, message = exc.error_code, str(exc)
        results.append(
            build(
                result_cls,
                name=name,
                topic_id=topic_id or uuid.UUID(int=0),
                error_code=error,
                error_message=message,
            )
        )
    return build(cls, throttle_time=NO_THROTTLE, responses=tuple(results))


# --- InitProducerId -------------------------------------------------------------------------


async def handle_init_producer_id(ctx: RequestContext, request: Any) -> Any:
    """A fresh id for idempotent producers; an epoch bump (fencing) for transactional ones."""
    cls = response_class(request)
    if request.transactional_id:
        result = ctx.broker.transactions.init_producer_id(
            request.transactional_id,
            int(request.transaction_timeout.total_seconds() * 1000),
            int(getattr(request, "producer_id", -1)),
            int(getattr(request, "producer_epoch", -1)),
        )
        error = result.error
        if error is ErrorCode.producer_fenced and request.__version__ < 4:
            error = ErrorCode.invalid_producer_epoch
        producer_id, epoch = result.producer_id, result.epoch
    else:
        error, producer_id, epoch = ErrorCode.none, ctx.broker.producer_ids.next_id(), 0
    return build(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=error,
        producer_id=producer_id,
        producer_epoch=epoch,
    )


DATA_APIS: tuple[ApiSpec, ...] = (
    ApiSpec(0, 3, 10, handle_produce),
    ApiSpec(1, 4, 16, handle_fetch),
    ApiSpec(2, 1, 7, handle_list_offsets),
    ApiSpec(3, 0, 12, handle_metadata),
    ApiSpec(18, 0, 3, handle_api_versions),
    ApiSpec(19, 2, 7, handle_create_topics),
    ApiSpec(20, 1, 6, handle_delete_topics),
    ApiSpec(22, 0, 4, handle_init_producer_id),
)
