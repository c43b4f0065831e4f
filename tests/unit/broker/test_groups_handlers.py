"""Group API handlers: kio requests of several versions in, encodable kio responses out."""

from __future__ import annotations

import asyncio
import datetime
import io
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from eventpro.broker.group_handlers import (
    GROUP_APIS,
    handle_describe_groups,
    handle_find_coordinator,
    handle_heartbeat,
    handle_join_group,
    handle_leave_group,
    handle_list_groups,
    handle_offset_commit,
    handle_offset_fetch,
    handle_sync_group,
)
from eventpro.broker.groups import GroupConfig, GroupCoordinator
from eventpro.broker.protocol import RequestContext, build, entity

GROUP = "handlers"
SESSION = datetime.timedelta(seconds=10)
REBALANCE = datetime.timedelta(seconds=5)
WAIT_S = 2.0

API_KEYS = {
    "offset_commit": 8,
    "offset_fetch": 9,
    "find_coordinator": 10,
    "join_group": 11,
    "heartbeat": 12,
    "leave_group": 13,
    "sync_group": 14,
    "describe_groups": 15,
    "list_groups": 16,
}


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    groups = GroupCoordinator(tmp_path, GroupConfig(initial_rebalance_delay_ms=0))
    await groups.start()
    yield SimpleNamespace(
        groups=groups, node_id=7, host="127.0.0.1", advertised_host="127.0.0.1", port=19092
    )
    await groups.close()


def context(broker: SimpleNamespace, request: Any) -> RequestContext:
    return RequestContext(
        api_key=request.__api_key__,
        api_version=request.__version__,
        correlation_id=1,
        client_id="test-client",
        client_host="127.0.0.1",
        broker=broker,  # type: ignore[arg-type]
    )


def request(api: str, version: int, /, **fields: Any) -> Any:
    return build(load_request_schema(API_KEYS[api], version), **fields)


def nested(api: str, version: int, entity_name: str, /, **fields: Any) -> Any:
    return build(entity(load_request_schema(API_KEYS[api], version), entity_name), **fields)


def roundtrip(response: Any) -> Any:
    """Encode with kio and decode again: the response must be valid on the wire."""
    buffer = io.BytesIO()
    entity_writer(type(response))(buffer, response)
    decoded, size = entity_reader(type(response))(buffer.getvalue(), 0)
    assert size == len(buffer.getvalue())
    return decoded


async def call(broker: SimpleNamespace, handler: Any, req: Any) -> Any:
    response = await asyncio.wait_for(handler(context(broker, req), req), WAIT_S)
    assert response.__version__ == req.__version__
    assert type(response).__name__ == type(req).__name__.replace("Request", "Response")
    return roundtrip(response)


def join_request(version: int, member_id: str = "", metadata: bytes = b"m") -> Any:
    protocol = nested(
        "join_group", version, "JoinGroupRequestProtocol", name="faust", metadata=metadata
    )
    return request(
        "join_group",
        version,
        group_id=GROUP,
        session_timeout=SESSION,
        rebalance_timeout=REBALANCE,
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocols=(protocol,),
        reason=None,
    )


def sync_request(
    version: int, generation: int, member_id: str, assignments: dict[str, bytes]
) -> Any:
    return request(
        "sync_group",
        version,
        group_id=GROUP,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocol_name="faust",
        assignments=tuple(
            nested("sync_group", version, "SyncGroupRequestAssignment", member_id=m, assignment=a)
            for m, a in assignments.items()
        ),
    )


def commit_request(version: int, generation: int, member_id: str, offsets: dict[int, int]) -> Any:
    partitions = tuple(
        nested(
            "offset_commit",
            version,
            "OffsetCommitRequestPartition",
            partition_index=p,
            committed_offset=o,
            committed_leader_epoch=0,
            committed_metadata=None,
        )
        for p, o in offsets.items()
    )
    topic = nested(
        "offset_commit", version, "OffsetCommitRequestTopic", name="t", partitions=partitions
    )
    return request(
        "offset_commit",
        version,
        group_id=GROUP,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        group_instance_id=None,
        retention_time=datetime.timedelta(milliseconds=-1),
        topics=(topic,),
    )


async def joined_member(broker: SimpleNamespace, version: int = 5) -> Any:
    """A member that completed the two-step join and SyncGroup (generation 1, Stable)."""
    first = await call(broker, handle_join_group, join_request(version))
    assert first.error_code is ErrorCode.member_id_required
    joined = await call(broker, handle_join_group, join_request(version, first.member_id))
    synced = await call(
        broker,
        handle_sync_group,
        sync_request(3, joined.generation_id, joined.member_id, {joined.member_id: b"a"}),
    )
    assert synced.assignment == b"a"
    return joined


async def test_find_coordinator_v1_and_v4(broker: SimpleNamespace) -> None:
    v1 = await call(
        broker, handle_find_coordinator, request("find_coordinator", 1, key="g", key_type=0)
    )
    assert (v1.error_code, v1.node_id, v1.host, v1.port) == (ErrorCode.none, 7, "127.0.0.1", 19092)
    v4 = await call(
        broker,
        handle_find_coordinator,
        request("find_coordinator", 4, key_type=1, coordinator_keys=("txn-a", "txn-b")),
    )
    assert [(c.key, c.node_id, c.port, c.error_code) for c in v4.coordinators] == [
        ("txn-a", 7, 19092, ErrorCode.none),
        ("txn-b", 7, 19092, ErrorCode.none),
    ]
    bad = await call(
        broker, handle_find_coordinator, request("find_coordinator", 2, key="g", key_type=5)
    )
    assert bad.error_code is ErrorCode.invalid_request


async def test_join_v5_two_step_and_v0_direct(broker: SimpleNamespace) -> None:
    first = await call(broker, handle_join_group, join_request(5))
    assert first.error_code is ErrorCode.member_id_required
    assert first.member_id.startswith("test-client-")
    joined = await call(broker, handle_join_group, join_request(5, first.member_id, b"meta"))
    assert (joined.error_code, joined.generation_id, joined.protocol_name) == (
        ErrorCode.none,
        1,
        "faust",
    )
    assert joined.leader == joined.member_id == first.member_id
    assert [(m.member_id, m.metadata) for m in joined.members] == [(first.member_id, b"meta")]

    v7 = await call(broker, handle_join_group, join_request(7, first.member_id, b"meta"))
    assert (v7.protocol_type, v7.protocol_name) == ("consumer", "faust")

    await broker.groups.close()
    stopped = await call(broker, handle_join_group, join_request(0))
    assert stopped.error_code is ErrorCode.coordinator_not_available
    assert stopped.protocol_name == ""


async def test_join_v0_without_member_id_joins_at_once(broker: SimpleNamespace) -> None:
    joined = await call(broker, handle_join_group, join_request(0))
    assert (joined.error_code, joined.generation_id) == (ErrorCode.none, 1)
    assert joined.member_id.startswith("test-client-")


async def test_sync_heartbeat_v0_and_v4(broker: SimpleNamespace) -> None:
    member = await joined_member(broker)
    again = await call(broker, handle_sync_group, sync_request(0, 1, member.member_id, {}))
    assert (again.error_code, again.assignment) == (ErrorCode.none, b"a")
    v5 = await call(broker, handle_sync_group, sync_request(5, 2, member.member_id, {}))
    assert v5.error_code is ErrorCode.illegal_generation

    for version in (0, 4):
        beat = request(
            "heartbeat", version, group_id=GROUP, generation_id=1, member_id=member.member_id
        )
        assert (await call(broker, handle_heartbeat, beat)).error_code is ErrorCode.none
    stranger = request("heartbeat", 1, group_id=GROUP, generation_id=1, member_id="x")
    assert (
        await call(broker, handle_heartbeat, stranger)
    ).error_code is ErrorCode.unknown_member_id


async def test_leave_v1_and_v3(broker: SimpleNamespace) -> None:
    member = await joined_member(broker)
    v1 = await call(
        broker, handle_leave_group, request("leave_group", 1, group_id=GROUP, member_id="nobody")
    )
    assert v1.error_code is ErrorCode.unknown_member_id
    identities = tuple(
        nested("leave_group", 3, "MemberIdentity", member_id=m, group_instance_id=None)
        for m in (member.member_id, "nobody")
    )
    v3 = await call(
        broker, handle_leave_group, request("leave_group", 3, group_id=GROUP, members=identities)
    )
    assert v3.error_code is ErrorCode.none
    assert [(m.member_id, m.error_code) for m in v3.members] == [
        (member.member_id, ErrorCode.none),
        ("nobody", ErrorCode.unknown_member_id),
    ]
    assert broker.groups.describe_group(GROUP).members == ()


async def test_offset_commit_v2_and_v8_then_fetch_v1_v7_v8(broker: SimpleNamespace) -> None:
    member = await joined_member(broker)
    v2 = await call(
        broker, handle_offset_commit, commit_request(2, 1, member.member_id, {0: 10, 1: 11})
    )
    assert [(p.partition_index, p.error_code) for p in v2.topics[0].partitions] == [
        (0, ErrorCode.none),
        (1, ErrorCode.none),
    ]
    v8 = await call(broker, handle_offset_commit, commit_request(8, 1, member.member_id, {0: 12}))
    assert v8.topics[0].partitions[0].error_code is ErrorCode.none
    stale = await call(
        broker, handle_offset_commit, commit_request(8, 9, member.member_id, {0: 99})
    )
    assert stale.topics[0].partitions[0].error_code is ErrorCode.illegal_generation

    wanted = nested(
        "offset_fetch", 1, "OffsetFetchRequestTopic", name="t", partition_indexes=(0, 5)
    )
    v1 = await call(
        broker, handle_offset_fetch, request("offset_fetch", 1, group_id=GROUP, topics=(wanted,))
    )
    assert [
        (p.partition_index, p.committed_offset, p.metadata) for p in v1.topics[0].partitions
    ] == [
        (0, 12, ""),
        (5, -1, ""),
    ]
    v7 = await call(
        broker, handle_offset_fetch, request("offset_fetch", 7, group_id=GROUP, topics=None)
    )
    assert v7.error_code is ErrorCode.none
    assert [
        (
            t.name,
            [
                (p.partition_index, p.committed_offset, p.committed_leader_epoch)
                for p in t.partitions
            ],
        )
        for t in v7.topics
    ] == [("t", [(0, 12, -1), (1, 11, -1)])]
    groups = (
        nested("offset_fetch", 8, "OffsetFetchRequestGroup", group_id=GROUP, topics=None),
        nested("offset_fetch", 8, "OffsetFetchRequestGroup", group_id="empty", topics=None),
    )
    v8_fetch = await call(
        broker, handle_offset_fetch, request("offset_fetch", 8, groups=groups, require_stable=True)
    )
    assert [(g.group_id, len(g.topics)) for g in v8_fetch.groups] == [(GROUP, 1), ("empty", 0)]


async def test_describe_and_list_groups_v0_and_latest(broker: SimpleNamespace) -> None:
    member = await joined_member(broker)
    v0 = await call(
        broker, handle_describe_groups, request("describe_groups", 0, groups=(GROUP, "nope"))
    )
    described, unknown = v0.groups
    assert (described.group_state, described.protocol_type, described.protocol_data) == (
        "Stable",
        "consumer",
        "faust",
    )
    assert [(m.member_id, m.client_id, m.member_assignment) for m in described.members] == [
        (member.member_id, "test-client", b"a")
    ]
    assert (unknown.group_state, unknown.members) == ("Dead", ())
    v5 = await call(
        broker,
        handle_describe_groups,
        request("describe_groups", 5, groups=(GROUP,), include_authorized_operations=False),
    )
    assert v5.groups[0].members[0].member_metadata == b"m"

    listed = await call(broker, handle_list_groups, request("list_groups", 0))
    assert [(g.group_id, g.protocol_type) for g in listed.groups] == [(GROUP, "consumer")]
    filtered = await call(
        broker, handle_list_groups, request("list_groups", 4, states_filter=("empty",))
    )
    assert filtered.groups == ()
    stable = await call(
        broker, handle_list_groups, request("list_groups", 4, states_filter=("Stable",))
    )
    assert [(g.group_id, g.group_state) for g in stable.groups] == [(GROUP, "Stable")]


def _generic_request(api_key: int, version: int) -> Any:
    """A plausible request of any version, built from a superset of every version's fields."""
    cls = load_request_schema(api_key, version)
    api = next(name for name, key in API_KEYS.items() if key == api_key)
    if api == "join_group":
        return join_request(version)
    if api == "sync_group":
        return sync_request(version, 1, "m", {"m": b"x"})
    if api == "offset_commit":
        return commit_request(version, -1, "", {0: 1})
    if api == "offset_fetch" and version >= 8:
        group = nested(api, version, "OffsetFetchRequestGroup", group_id=GROUP, topics=None)
        return request(api, version, groups=(group,))
    if api == "offset_fetch":
        topic = nested(api, version, "OffsetFetchRequestTopic", name="t", partition_indexes=(0,))
        return request(api, version, group_id=GROUP, topics=(topic,))
    if api == "leave_group" and version >= 3:
        identity = nested(api, version, "MemberIdentity", member_id="m", group_instance_id=None)
        return request(api, version, group_id=GROUP, members=(identity,))
    return build(
        cls,
        key="g",
        key_type=0,
        coordinator_keys=("g",),
        group_id=GROUP,
        generation_id=1,
        member_id="m",
        groups=(GROUP,),
        include_authorized_operations=False,
        states_filter=(),
    )


@pytest.mark.parametrize(
    ("api_key", "version"),
    [
        (spec.api_key, version)
        for spec in GROUP_APIS
        for version in range(spec.min_version, spec.max_version + 1)
    ],
)
async def test_every_advertised_version_answers_with_a_valid_response(
    broker: SimpleNamespace, api_key: int, version: int
) -> None:
    spec = next(spec for spec in GROUP_APIS if spec.api_key == api_key)
    req = _generic_request(api_key, version)
    response = await call(broker, spec.handler, req)
    assert response.__api_key__ == api_key
