"""Transaction APIs: AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn (26) and
TxnOffsetCommit (28), backed by the :class:`~eventpro.broker.transactions.TransactionCoordinator`.

PRODUCER_FENCED (90) exists only for clients that know it (KIP-588): older request versions get
INVALID_PRODUCER_EPOCH instead, which aiokafka (v0 everywhere) turns into ProducerFenced.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from eventpro.broker.protocol import ApiSpec, RequestContext, build, entity, response_class
from eventpro.broker.transactions import TransactionCoordinator

__all__ = ("TXN_APIS", "fenced_for_version")

logger = logging.getLogger(__name__)

_NO_THROTTLE = datetime.timedelta(0)
# First version of each API whose clients understand PRODUCER_FENCED.
_PRODUCER_FENCED_SINCE = {22: 4, 24: 2, 25: 2, 26: 2, 28: 1_000}


def fenced_for_version(error: ErrorCode, api_key: int, version: int) -> ErrorCode:
    """PRODUCER_FENCED for clients that know it, else INVALID_PRODUCER_EPOCH."""
    if error is ErrorCode.producer_fenced and version < _PRODUCER_FENCED_SINCE[api_key]:
        return ErrorCode.invalid_producer_epoch
    return error


def _coordinator(ctx: RequestContext) -> TransactionCoordinator:
    return ctx.broker.transactions


async def handle_add_partitions_to_txn(ctx: RequestContext, request: Any) -> Any:
    """v0-v3: one transaction per request (v4+ batching is not advertised)."""
    cls = response_class(request)
    topic_cls = entity(cls, "AddPartitionsToTxnTopicResult")
    part_cls = entity(cls, "AddPartitionsToTxnPartitionResult")
    topics = request.v3_and_below_topics
    wanted = [(t.name, int(p)) for t in topics for p in t.partitions]
    results = _coordinator(ctx).add_partitions(
        request.v3_and_below_transactional_id,
        int(request.v3_and_below_producer_id),
        int(request.v3_and_below_producer_epoch),
        wanted,
    )
    version = request.__version__
    answered = tuple(
        build(
            topic_cls,
            name=t.name,
            results_by_partition=tuple(
                build(
                    part_cls,
                    partition_index=p,
                    partition_error_code=fenced_for_version(results[(t.name, int(p))], 24, version),
                )
                for p in t.partitions
            ),
        )
        for t in topics
    )
    return build(cls, throttle_time=_NO_THROTTLE, results_by_topic_v3_and_below=answered)


async def handle_add_offsets_to_txn(ctx: RequestContext, request: Any) -> Any:
    error = _coordinator(ctx).add_offsets(
        request.transactional_id,
        int(request.producer_id),
        int(request.producer_epoch),
        request.group_id,
    )
    return build(
        response_class(request),
        throttle_time=_NO_THROTTLE,
        error_code=fenced_for_version(error, 25, request.__version__),
    )


async def handle_end_txn(ctx: RequestContext, request: Any) -> Any:
    error = _coordinator(ctx).end_txn(
        request.transactional_id,
        int(request.producer_id),
        int(request.producer_epoch),
        bool(request.committed),
    )
    if error is not ErrorCode.none:
        logger.info(
            "EndTxn(%s) of %r from %s answered %s",
            "commit" if request.committed else "abort",
            request.transactional_id,
            ctx.client_id,
            error.name,
        )
    return build(
        response_class(request),
        throttle_time=_NO_THROTTLE,
        error_code=fenced_for_version(error, 26, request.__version__),
    )


async def handle_txn_offset_commit(ctx: RequestContext, request: Any) -> Any:
    cls = response_class(request)
    topic_cls = entity(cls, "TxnOffsetCommitResponseTopic")
    part_cls = entity(cls, "TxnOffsetCommitResponsePartition")
    offsets = {
        (t.name, int(p.partition_index)): (int(p.committed_offset), p.committed_metadata)
        for t in request.topics
        for p in t.partitions
    }
    errors = _coordinator(ctx).stage_offsets(
        request.transactional_id,
        request.group_id,
        int(request.producer_id),
        int(request.producer_epoch),
        offsets,
        generation_id=int(getattr(request, "generation_id", -1)),
        member_id=getattr(request, "member_id", "") or "",
    )
    version = request.__version__
    topics = tuple(
        build(
            topic_cls,
            name=t.name,
            partitions=tuple(
                build(
                    part_cls,
                    partition_index=p.partition_index,
                    error_code=fenced_for_version(
                        errors[(t.name, int(p.partition_index))], 28, version
                    ),
                )
                for p in t.partitions
            ),
        )
        for t in request.topics
    )
    return build(cls, throttle_time=_NO_THROTTLE, topics=topics)


TXN_APIS: tuple[ApiSpec, ...] = (
    ApiSpec(24, 0, 3, handle_add_partitions_to_txn),
    ApiSpec(25, 0, 3, handle_add_offsets_to_txn),
    ApiSpec(26, 0, 3, handle_end_txn),
    ApiSpec(28, 0, 3, handle_txn_offset_commit),
)
