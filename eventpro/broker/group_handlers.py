"""Group APIs: kio request -> kio response of the same version, backed by the GroupCoordinator.

Each handler serves every version of its API: responses are built with
:func:`eventpro.broker.protocol.build`, which passes only the fields that version has. Committed
leader epochs are answered as -1 (unknown) so clients do not start leader-epoch validation,
which this single-node broker has no use for.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from eventpro.broker.groups import GroupCoordinator
from eventpro.broker.protocol import ApiSpec, RequestContext, build, entity, response_class

__all__ = (
    "GROUP_APIS",
    "handle_describe_groups",
    "handle_find_coordinator",
    "handle_heartbeat",
    "handle_join_group",
    "handle_leave_group",
    "handle_list_groups",
    "handle_offset_commit",
    "handle_offset_fetch",
    "handle_sync_group",
)

logger = logging.getLogger(__name__)

_NO_THROTTLE = datetime.timedelta(0)
_ONE_MS = datetime.timedelta(milliseconds=1)
_KEY_TYPE_GROUP = 0
_KEY_TYPE_TRANSACTION = 1
_NO_LEADER_EPOCH = -1


def _groups(ctx: RequestContext) -> GroupCoordinator:
    return ctx.broker.groups


def _ms(value: datetime.timedelta | int | None) -> int:
    if value is None:
        return -1
    if isinstance(value, datetime.timedelta):
        return value // _ONE_MS
    return int(value)


# -- FindCoordinator (10) ------------------------------------------------------------------


async def handle_find_coordinator(ctx: RequestContext, request: Any) -> Any:
    """This node coordinates every group and every transactional id."""
    cls = response_class(request)
    broker = ctx.broker
    host = getattr(broker, "advertised_host", None) or broker.host
    key_type = int(getattr(request, "key_type", _KEY_TYPE_GROUP))
    if key_type in (_KEY_TYPE_GROUP, _KEY_TYPE_TRANSACTION):
        found: dict[str, Any] = {
            "error_code": ErrorCode.none,
            "error_message": None,
            "node_id": broker.node_id,
            "host": host,
            "port": broker.port,
        }
    else:
        found = {
            "error_code": ErrorCode.invalid_request,
            "error_message": f"unknown coordinator key type {key_type}",
            "node_id": -1,
            "host": "",
            "port": -1,
        }
    if hasattr(request, "coordinator_keys"):
        coordinator_cls = entity(cls, "Coordinator")
        coordinators = tuple(
            build(coordinator_cls, key=key, **found) for key in request.coordinator_keys
        )
        return build(cls, throttle_time=_NO_THROTTLE, coordinators=coordinators)
    return build(cls, throttle_time=_NO_THROTTLE, **found)


# -- JoinGroup (11) / SyncGroup (14) / Heartbeat (12) / LeaveGroup (13) --------------------


async def handle_join_group(ctx: RequestContext, request: Any) -> Any:
    """Join a group; v4+ clients get MEMBER_ID_REQUIRED first (KIP-394)."""
    cls = response_class(request)
    version = request.__version__
    result = await _groups(ctx).join_group(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        client_id=ctx.client_id or "",
        client_host=ctx.client_host,
        session_timeout_ms=_ms(request.session_timeout),
        rebalance_timeout_ms=_ms(getattr(request, "rebalance_timeout", None)),
        protocol_type=request.protocol_type,
        protocols=[(protocol.name, bytes(protocol.metadata)) for protocol in request.protocols],
        require_known_member_id=version >= 4,
    )
    member_cls = entity(cls, "JoinGroupResponseMember")
    members = tuple(
        build(
            member_cls,
            member_id=member.member_id,
            group_instance_id=member.group_instance_id,
            metadata=member.metadata,
        )
        for member in result.members
    )
    protocol_name = result.protocol_name
    if protocol_name is None and version < 7:
        protocol_name = ""
    return build(
        cls,
        throttle_time=_NO_THROTTLE,
        error_code=result.error,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type,
        protocol_name=protocol_name,
        leader=result.leader_id,
        member_id=result.member_id,
        members=members,
    )


async def handle_sync_group(ctx: RequestContext, request: Any) -> Any:
    """Distribute the leader's assignment; followers wait for it."""
    cls = response_class(request)
    result = await _groups(ctx).sync_group(
        group_id=request.group_id,
        generation_id=int(request.generation_id),
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        assignments={a.member_id: bytes(a.assignment) for a in request.assignments},
    )
    return build(
        cls,
        throttle_time=_NO_THROTTLE,
        error_code=result.error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


async def handle_heartbeat(ctx: RequestContext, request: Any) -> Any:
    """Keep a member alive; REBALANCE_IN_PROGRESS tells it to rejoin."""
    error = _groups(ctx).heartbeat(request.group_id, int(request.generation_id), request.member_id)
    return build(response_class(request), throttle_time=_NO_THROTTLE, error_code=error)


async def handle_leave_group(ctx: RequestContext, request: Any) -> Any:
    """Remove one member (v0-v2) or a batch of members (v3+); the group rebalances."""
    cls = response_class(request)
    if hasattr(request, "members"):
        identities = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        identities = [(request.member_id, None)]
    error, member_errors = _groups(ctx).leave_group(
        request.group_id, [member_id for member_id, _ in identities]
    )
    if not hasattr(request, "members"):
        if error is ErrorCode.none:
            error = member_errors.get(request.member_id, ErrorCode.none)
        return build(cls, throttle_time=_NO_THROTTLE, error_code=error)
    member_cls = entity(cls, "MemberResponse")
    members = tuple(
        build(
            member_cls,
            member_id=member_id,
            group_instance_id=instance_id,
            error_code=member_errors.get(member_id, error),
        )
        for member_id, instance_id in identities
    )
    return build(cls, throttle_time=_NO_THROTTLE, error_code=error, members=members)


# -- OffsetCommit (8) / OffsetFetch (9) ----------------------------------------------------


async def handle_offset_commit(ctx: RequestContext, request: Any) -> Any:
    """Persist committed offsets before answering."""
    cls = response_class(request)
    offsets: dict[tuple[str, int], tuple[int, str | None]] = {}
    for topic in request.topics:
        for partition in topic.partitions:
            offsets[(topic.name, int(partition.partition_index))] = (
                int(partition.committed_offset),
                partition.committed_metadata,
            )
    errors = _groups(ctx).commit_offsets(
        request.group_id,
        int(getattr(request, "generation_id_or_member_epoch", -1)),
        request.member_id,
        offsets,
    )
    topic_cls = entity(cls, "OffsetCommitResponseTopic")
    partition_cls = entity(cls, "OffsetCommitResponsePartition")
    topics = tuple(
        build(
            topic_cls,
            name=topic.name,
            partitions=tuple(
                build(
                    partition_cls,
                    partition_index=partition.partition_index,
                    error_code=errors[(topic.name, int(partition.partition_index))],
                )
                for partition in topic.partitions
            ),
        )
        for topic in request.topics
    )
    return build(cls, throttle_time=_NO_THROTTLE, topics=topics)


def _fetched_topics(
    groups: GroupCoordinator,
    group_id: str,
    requested: Iterable[Any] | None,
    topic_cls: type,
    partition_cls: type,
    unstable: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset(),
) -> tuple[Any, ...]:
    partitions = (
        None
        if requested is None
        else [(topic.name, int(index)) for topic in requested for index in topic.partition_indexes]
    )
    committed = groups.fetch_offsets(group_id, partitions)
    by_topic: dict[str, list[Any]] = {}
    if partitions is not None:
        for topic in requested or ():
            by_topic.setdefault(topic.name, [])
    for (topic_name, index), (offset, metadata) in sorted(committed.items()):
        pending = (topic_name, index) in unstable
        by_topic.setdefault(topic_name, []).append(
            build(
                partition_cls,
                partition_index=index,
                committed_offset=-1 if pending else offset,
                committed_leader_epoch=_NO_LEADER_EPOCH,
                metadata=metadata if metadata is not None else "",
                error_code=ErrorCode.unstable_offset_commit if pending else ErrorCode.none,
            )
        )
    return tuple(
        build(topic_cls, name=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    )


async def handle_offset_fetch(ctx: RequestContext, request: Any) -> Any:
    """Committed offsets of one group (v1-v7) or of a batch of groups (v8+); unknown -> -1.

    With require_stable (v7+) partitions whose offsets a transaction has staged but not yet
    committed answer UNSTABLE_OFFSET_COMMIT, and the client retries.
    """
    cls = response_class(request)
    groups = _groups(ctx)
    stable = bool(getattr(request, "require_stable", False))

    transactions = getattr(ctx.broker, "transactions", None)

    def unstable(group_id: str) -> set[tuple[str, int]]:
        if not stable or transactions is None:
            return set()
        return transactions.pending_offsets(group_id)

    if hasattr(request, "groups"):
        group_cls = entity(cls, "OffsetFetchResponseGroup")
        topic_cls = entity(cls, "OffsetFetchResponseTopics")
        partition_cls = entity(cls, "OffsetFetchResponsePartitions")
        answered = tuple(
            build(
                group_cls,
                group_id=group.group_id,
                topics=_fetched_topics(
                    groups,
                    group.group_id,
                    group.topics,
                    topic_cls,
                    partition_cls,
                    unstable(group.group_id),
                ),
                error_code=ErrorCode.none,
            )
            for group in request.groups
        )
        return build(cls, throttle_time=_NO_THROTTLE, groups=answered)
    topics = _fetched_topics(
        groups,
        request.group_id,
        request.topics,
        entity(cls, "OffsetFetchResponseTopic"),
        entity(cls, "OffsetFetchResponsePartition"),
        unstable(request.group_id),
    )
    return build(cls, throttle_time=_NO_THROTTLE, topics=topics, error_code=ErrorCode.none)


# -- DescribeGroups (15) / ListGroups (16) -------------------------------------------------


async def handle_describe_groups(ctx: RequestContext, request: Any) -> Any:
    """State, protocol and members of each group; unknown groups are reported Dead."""
    cls = response_class(request)
    group_cls = entity(cls, "DescribedGroup")
    member_cls = entity(cls, "DescribedGroupMember")
    described = []
    for group_id in request.groups:
        description = _groups(ctx).describe_group(group_id)
        members = tuple(
            build(
                member_cls,
                member_id=member.member_id,
                group_instance_id=member.group_instance_id,
                client_id=member.client_id,
                client_host=member.client_host,
                member_metadata=member.metadata,
                member_assignment=member.assignment,
            )
            for member in description.members
        )
        described.append(
            build(
                group_cls,
                error_code=description.error,
                group_id=group_id,
                group_state=description.state,
                protocol_type=description.protocol_type,
                protocol_data=description.protocol,
                members=members,
            )
        )
    return build(cls, throttle_time=_NO_THROTTLE, groups=tuple(described))


async def handle_list_groups(ctx: RequestContext, request: Any) -> Any:
    """Every group, optionally filtered by state (v4+, case-insensitive as in Kafka)."""
    cls = response_class(request)
    listed_cls = entity(cls, "ListedGroup")
    states = {state.lower() for state in getattr(request, "states_filter", ())}
    listed = tuple(
        build(listed_cls, group_id=group_id, protocol_type=protocol_type, group_state=state)
        for group_id, protocol_type, state in _groups(ctx).list_groups()
        if not states or state.lower() in states
    )
    return build(cls, throttle_time=_NO_THROTTLE, error_code=ErrorCode.none, groups=listed)


GROUP_APIS: list[ApiSpec] = [
    ApiSpec(api_key=8, min_version=2, max_version=9, handler=handle_offset_commit),
    ApiSpec(api_key=9, min_version=1, max_version=9, handler=handle_offset_fetch),
    ApiSpec(api_key=10, min_version=0, max_version=4, handler=handle_find_coordinator),
    ApiSpec(api_key=11, min_version=0, max_version=7, handler=handle_join_group),
    ApiSpec(api_key=12, min_version=0, max_version=4, handler=handle_heartbeat),
    ApiSpec(api_key=13, min_version=0, max_version=5, handler=handle_leave_group),
    ApiSpec(api_key=14, min_version=0, max_version=5, handler=handle_sync_group),
    ApiSpec(api_key=15, min_version=0, max_version=5, handler=handle_describe_groups),
    ApiSpec(api_key=16, min_version=0, max_version=4, handler=handle_list_groups),
]
