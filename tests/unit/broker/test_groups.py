"""State machine of the consumer-group coordinator (classic protocol), driven by a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from kio.schema.errors import ErrorCode

from eventpro.broker.groups import (
    GroupConfig,
    GroupCoordinator,
    GroupState,
    JoinResult,
    SyncResult,
)

T = TypeVar("T")

WAIT_S = 2.0
SESSION_MS = 10_000
REBALANCE_MS = 5_000
GROUP = "g"


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def coordinator(tmp_path: Path, clock: FakeClock) -> AsyncIterator[GroupCoordinator]:
    """No initial delay: joins complete as soon as every member has joined."""
    coord = GroupCoordinator(
        tmp_path,
        GroupConfig(initial_rebalance_delay_ms=0, min_session_timeout_ms=10),
        clock=clock,
    )
    await coord.start()
    yield coord
    await coord.close()


async def wait(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT_S)


async def settle() -> None:
    """Let every ready task run (no wall-clock time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


def join(
    coord: GroupCoordinator,
    member_id: str = "",
    *,
    group: str = GROUP,
    protocols: list[tuple[str, bytes]] | None = None,
    session_ms: int = SESSION_MS,
    rebalance_ms: int = REBALANCE_MS,
    require_known: bool = True,
    client_id: str = "client",
) -> asyncio.Task[JoinResult]:
    return asyncio.ensure_future(
        coord.join_group(
            group_id=group,
            member_id=member_id,
            group_instance_id=None,
            client_id=client_id,
            client_host="127.0.0.1",
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=rebalance_ms,
            protocol_type="consumer",
            protocols=protocols if protocols is not None else [("faust", member_id.encode())],
            require_known_member_id=require_known,
        )
    )


async def new_member_id(
    coord: GroupCoordinator,
    *,
    group: str = GROUP,
    client_id: str = "client",
    protocols: list[tuple[str, bytes]] | None = None,
) -> str:
    """First step of the KIP-394 join: the coordinator hands out a member id."""
    result = await wait(join(coord, group=group, client_id=client_id, protocols=protocols))
    assert result.error is ErrorCode.member_id_required
    return result.member_id


def sync(
    coord: GroupCoordinator,
    result: JoinResult,
    assignments: dict[str, bytes] | None = None,
    *,
    group: str = GROUP,
) -> asyncio.Task[SyncResult]:
    return asyncio.ensure_future(
        coord.sync_group(
            group_id=group,
            generation_id=result.generation_id,
            member_id=result.member_id,
            group_instance_id=None,
            protocol_type="consumer",
            protocol_name=result.protocol_name,
            assignments=assignments or {},
        )
    )


async def stable_pair(coord: GroupCoordinator) -> tuple[JoinResult, JoinResult]:
    """Two members A (leader) and B in a Stable generation 1."""
    a_id = await new_member_id(coord)
    a = await wait(join(coord, a_id))
    assert a.generation_id == 1
    b_id = await new_member_id(coord)
    b_task = join(coord, b_id)
    await settle()
    assert coord.heartbeat(GROUP, 1, a_id) is ErrorCode.rebalance_in_progress
    a = await wait(join(coord, a_id))
    b = await wait(b_task)
    assert (a.generation_id, b.generation_id) == (2, 2)
    follower = sync(coord, b)
    leader = sync(coord, a, {a_id: b"A", b_id: b"B"})
    assert (await wait(leader)).assignment == b"A"
    assert (await wait(follower)).assignment == b"B"
    return a, b


# -- joining -------------------------------------------------------------------------------


async def test_two_step_join_single_member_gets_generation_1_and_leads(
    coordinator: GroupCoordinator,
) -> None:
    first = await wait(join(coordinator, client_id="faust-worker"))
    assert first.error is ErrorCode.member_id_required
    assert first.member_id.startswith("faust-worker-")
    assert first.generation_id == -1

    joined = await wait(join(coordinator, first.member_id, protocols=[("faust", b"meta")]))
    assert joined.error is ErrorCode.none
    assert joined.generation_id == 1
    assert joined.leader_id == joined.member_id == first.member_id
    assert joined.protocol_name == "faust"
    assert [(m.member_id, m.metadata) for m in joined.members] == [(first.member_id, b"meta")]
    assert coordinator.describe_group(GROUP).state == "CompletingRebalance"


async def test_join_without_member_id_before_v4_joins_directly(
    coordinator: GroupCoordinator,
) -> None:
    joined = await wait(join(coordinator, require_known=False))
    assert joined.error is ErrorCode.none
    assert joined.generation_id == 1
    assert joined.member_id


async def test_unknown_member_id_is_rejected(coordinator: GroupCoordinator) -> None:
    result = await wait(join(coordinator, "made-up"))
    assert result.error is ErrorCode.unknown_member_id


async def test_invalid_session_timeout_is_rejected(coordinator: GroupCoordinator) -> None:
    result = await wait(join(coordinator, session_ms=400_000))
    assert result.error is ErrorCode.invalid_session_timeout


async def test_pending_member_id_expires_after_session_timeout(
    coordinator: GroupCoordinator, clock: FakeClock
) -> None:
    member_id = await new_member_id(coordinator)
    clock.advance(SESSION_MS / 1000 + 0.1)
    coordinator.run_timers()
    assert (await wait(join(coordinator, member_id))).error is ErrorCode.unknown_member_id


async def test_inconsistent_protocols_are_rejected(coordinator: GroupCoordinator) -> None:
    a_id = await new_member_id(coordinator, protocols=[("range", b"")])
    await wait(join(coordinator, a_id, protocols=[("range", b"")]))
    result = await wait(join(coordinator, protocols=[("faust", b"")]))
    assert result.error is ErrorCode.inconsistent_group_protocol


async def test_protocol_all_members_support_is_chosen_by_preference(
    coordinator: GroupCoordinator,
) -> None:
    a_protocols = [("range", b"a"), ("roundrobin", b"a")]
    a_id = await new_member_id(coordinator, protocols=a_protocols)
    await wait(join(coordinator, a_id, protocols=a_protocols))
    b_id = await new_member_id(coordinator, protocols=[("roundrobin", b"")])
    b_task = join(coordinator, b_id, protocols=[("cooperative", b"b"), ("roundrobin", b"b")])
    await settle()
    a = await wait(join(coordinator, a_id, protocols=a_protocols))
    b = await wait(b_task)
    assert a.protocol_name == b.protocol_name == "roundrobin"
    assert sorted(m.metadata for m in a.members) == [b"a", b"b"]


async def test_third_member_triggers_rebalance_and_everyone_rejoins(
    coordinator: GroupCoordinator,
) -> None:
    a, b = await stable_pair(coordinator)
    assert coordinator.heartbeat(GROUP, 2, a.member_id) is ErrorCode.none

    c_id = await new_member_id(coordinator)
    c_task = join(coordinator, c_id)
    await settle()
    assert not c_task.done()
    assert coordinator.heartbeat(GROUP, 2, a.member_id) is ErrorCode.rebalance_in_progress
    assert coordinator.heartbeat(GROUP, 2, b.member_id) is ErrorCode.rebalance_in_progress

    a_task = join(coordinator, a.member_id)
    await settle()
    assert not c_task.done() and not a_task.done()
    b3 = await wait(join(coordinator, b.member_id))
    a3, c3 = await wait(a_task), await wait(c_task)
    assert {r.generation_id for r in (a3, b3, c3)} == {3}
    assert a3.leader_id == a.member_id
    assert len(a3.members) == 3
    assert b3.members == () and c3.members == ()


async def test_member_not_rejoining_within_rebalance_timeout_is_dropped(
    coordinator: GroupCoordinator, clock: FakeClock
) -> None:
    a, b = await stable_pair(coordinator)
    c_id = await new_member_id(coordinator)
    c_task = join(coordinator, c_id)
    a_task = join(coordinator, a.member_id)
    await settle()
    assert not a_task.done()

    clock.advance(REBALANCE_MS / 1000 - 0.1)
    coordinator.heartbeat(GROUP, 2, b.member_id)  # alive but never rejoins
    coordinator.run_timers()
    assert not a_task.done()

    clock.advance(0.2)
    coordinator.run_timers()
    a3, c3 = await wait(a_task), await wait(c_task)
    assert a3.generation_id == c3.generation_id == 3
    assert sorted(m.member_id for m in a3.members) == sorted([a.member_id, c_id])
    assert coordinator.heartbeat(GROUP, 3, b.member_id) is ErrorCode.unknown_member_id


async def test_dead_leader_is_dropped_and_new_member_leads(
    coordinator: GroupCoordinator, clock: FakeClock
) -> None:
    """tansu T7: a restarted worker must not wait on the dead member it replaced."""
    old_id = await new_member_id(coordinator)
    old = await wait(join(coordinator, old_id))
    await wait(sync(coordinator, old, {old_id: b"x"}))
    new_id = await new_member_id(coordinator)
    new_task = join(coordinator, new_id)
    await settle()
    clock.advance(REBALANCE_MS / 1000 + 0.1)
    coordinator.run_timers()
    result = await wait(new_task)
    assert result.leader_id == new_id
    assert [m.member_id for m in result.members] == [new_id]
    assert (await wait(sync(coordinator, result, {new_id: b"all"}))).assignment == b"all"


async def test_session_expiry_evicts_silent_member(
    coordinator: GroupCoordinator, clock: FakeClock
) -> None:
    a, b = await stable_pair(coordinator)
    for _ in range(4):
        clock.advance(SESSION_MS / 1000 / 3)
        assert coordinator.heartbeat(GROUP, 2, a.member_id) is ErrorCode.none
        coordinator.run_timers()
        if coordinator.describe_group(GROUP).state != "Stable":
            break
    assert coordinator.describe_group(GROUP).state == "PreparingRebalance"
    assert coordinator.heartbeat(GROUP, 2, a.member_id) is ErrorCode.rebalance_in_progress
    assert coordinator.heartbeat(GROUP, 2, b.member_id) is ErrorCode.unknown_member_id
    a3 = await wait(join(coordinator, a.member_id))
    assert a3.generation_id == 3
    assert [m.member_id for m in a3.members] == [a.member_id]


async def test_last_member_expiring_leaves_group_empty(
    coordinator: GroupCoordinator, clock: FakeClock
) -> None:
    a_id = await new_member_id(coordinator)
    a = await wait(join(coordinator, a_id))
    await wait(sync(coordinator, a, {a_id: b""}))
    assert coordinator.commit_offsets(GROUP, 1, a_id, {("t", 0): (4, None)}) == {
        ("t", 0): ErrorCode.none
    }
    clock.advance(SESSION_MS / 1000 + 0.1)
    coordinator.run_timers()
    description = coordinator.describe_group(GROUP)
    assert (description.state, description.members) == ("Empty", ())
    assert coordinator.generation(GROUP) == 2
    assert coordinator.fetch_offsets(GROUP, None) == {("t", 0): (4, None)}


async def test_group_without_members_or_offsets_is_forgotten(
    coordinator: GroupCoordinator, clock: FakeClock
) -> None:
    a_id = await new_member_id(coordinator)
    coordinator.leave_group(GROUP, [a_id])
    a_id = await new_member_id(coordinator)
    await wait(join(coordinator, a_id))
    coordinator.leave_group(GROUP, [a_id])
    coordinator.run_timers()
    assert coordinator.describe_group(GROUP).state == "Dead"
    assert coordinator.list_groups() == []


async def test_leave_triggers_rebalance(coordinator: GroupCoordinator) -> None:
    a, b = await stable_pair(coordinator)
    error, per_member = coordinator.leave_group(GROUP, [b.member_id, "stranger"])
    assert error is ErrorCode.none
    assert per_member == {b.member_id: ErrorCode.none, "stranger": ErrorCode.unknown_member_id}
    assert coordinator.heartbeat(GROUP, 2, a.member_id) is ErrorCode.rebalance_in_progress
    a3 = await wait(join(coordinator, a.member_id))
    assert a3.generation_id == 3
    assert [m.member_id for m in a3.members] == [a.member_id]


async def test_leave_of_unknown_group_reports_unknown_member(
    coordinator: GroupCoordinator,
) -> None:
    assert coordinator.leave_group("nope", ["m"]) == (
        ErrorCode.none,
        {"m": ErrorCode.unknown_member_id},
    )


# -- syncing and heartbeats ----------------------------------------------------------------


async def test_follower_sync_waits_for_leader(coordinator: GroupCoordinator) -> None:
    a_id = await new_member_id(coordinator)
    await wait(join(coordinator, a_id))
    b_id = await new_member_id(coordinator)
    b_task = join(coordinator, b_id)
    await settle()
    a = await wait(join(coordinator, a_id))
    b = await wait(b_task)

    follower = sync(coordinator, b)
    await settle()
    assert not follower.done()
    assert coordinator.heartbeat(GROUP, b.generation_id, b.member_id) is ErrorCode.none

    leader = await wait(sync(coordinator, a, {a_id: b"p0", b_id: b"p1"}))
    assert (leader.error, leader.assignment, leader.protocol_name) == (
        ErrorCode.none,
        b"p0",
        "faust",
    )
    assert (await wait(follower)).assignment == b"p1"
    description = coordinator.describe_group(GROUP)
    assert description.state == "Stable"
    assert {m.member_id: m.assignment for m in description.members} == {a_id: b"p0", b_id: b"p1"}
    # a late sync in a Stable generation returns the stored assignment at once
    assert (await wait(sync(coordinator, b))).assignment == b"p1"


async def test_wrong_generation_is_illegal(coordinator: GroupCoordinator) -> None:
    a, _ = await stable_pair(coordinator)
    stale = JoinResult(ErrorCode.none, a.member_id, 1, "consumer", "faust", a.member_id)
    assert (await wait(sync(coordinator, stale))).error is ErrorCode.illegal_generation
    assert coordinator.heartbeat(GROUP, 1, a.member_id) is ErrorCode.illegal_generation
    assert coordinator.commit_offsets(GROUP, 1, a.member_id, {("t", 0): (1, None)}) == {
        ("t", 0): ErrorCode.illegal_generation
    }


async def test_sync_during_new_rebalance_gets_rebalance_in_progress(
    coordinator: GroupCoordinator,
) -> None:
    _, b = await stable_pair(coordinator)
    c_id = await new_member_id(coordinator)
    join(coordinator, c_id)
    await settle()
    result = await wait(sync(coordinator, b))
    assert result.error is ErrorCode.rebalance_in_progress


async def test_waiting_follower_learns_of_rebalance_when_leader_vanishes(
    coordinator: GroupCoordinator, clock: FakeClock
) -> None:
    a_id = await new_member_id(coordinator)
    await wait(join(coordinator, a_id))
    b_id = await new_member_id(coordinator)
    b_task = join(coordinator, b_id)
    await settle()
    await wait(join(coordinator, a_id))
    follower = sync(coordinator, await wait(b_task))
    await settle()
    clock.advance(REBALANCE_MS / 1000 + 0.1)
    coordinator.run_timers()
    assert (await wait(follower)).error is ErrorCode.rebalance_in_progress


async def test_close_answers_waiting_joins(tmp_path: Path, clock: FakeClock) -> None:
    coord = GroupCoordinator(tmp_path, GroupConfig(initial_rebalance_delay_ms=3000), clock=clock)
    await coord.start()
    member_id = await new_member_id(coord)
    task = join(coord, member_id)
    await settle()
    assert not task.done()
    await coord.close()
    assert (await wait(task)).error is ErrorCode.coordinator_not_available
    assert coord.heartbeat(GROUP, 1, member_id) is ErrorCode.coordinator_not_available


# -- initial rebalance delay ---------------------------------------------------------------


async def test_initial_delay_gathers_members_started_together(
    tmp_path: Path, clock: FakeClock
) -> None:
    coord = GroupCoordinator(
        tmp_path,
        GroupConfig(initial_rebalance_delay_ms=3000, min_session_timeout_ms=10),
        clock=clock,
    )
    await coord.start()
    try:
        a_id = await new_member_id(coord)
        a_task = join(coord, a_id, rebalance_ms=60_000)
        await settle()
        clock.advance(1.0)
        b_id = await new_member_id(coord)
        b_task = join(coord, b_id, rebalance_ms=60_000)
        await settle()
        clock.advance(2.1)  # first delay over; B joined meanwhile, so it is extended once
        coord.run_timers()
        await settle()
        assert not a_task.done()
        clock.advance(3.1)
        coord.run_timers()
        a, b = await wait(a_task), await wait(b_task)
        assert a.generation_id == b.generation_id == 1
        assert len(a.members) == 2 and b.members == ()
    finally:
        await coord.close()


async def test_initial_delay_is_capped_by_rebalance_timeout(
    tmp_path: Path, clock: FakeClock
) -> None:
    coord = GroupCoordinator(
        tmp_path,
        GroupConfig(initial_rebalance_delay_ms=3000, min_session_timeout_ms=10),
        clock=clock,
    )
    await coord.start()
    try:
        tasks = []
        for _ in range(4):
            member_id = await new_member_id(coord)
            tasks.append(join(coord, member_id, rebalance_ms=5000))
            await settle()
            clock.advance(2.9)
            coord.run_timers()
        results = [await wait(task) for task in tasks[:3]]
        assert {r.generation_id for r in results} == {1}
        assert len(results[0].members) == 3
    finally:
        await coord.close()


async def test_lone_worker_is_assigned_after_initial_delay_in_real_time(tmp_path: Path) -> None:
    coord = GroupCoordinator(
        tmp_path, GroupConfig(initial_rebalance_delay_ms=50, min_session_timeout_ms=10)
    )
    await coord.start()
    try:
        member_id = await new_member_id(coord)
        result = await wait(join(coord, member_id, session_ms=1000, rebalance_ms=1000))
        assert (result.error, result.generation_id, result.leader_id) == (
            ErrorCode.none,
            1,
            member_id,
        )
        assert (await wait(sync(coord, result, {member_id: b"a"}))).assignment == b"a"
    finally:
        await coord.close()


async def test_real_time_session_expiry_by_background_task(tmp_path: Path) -> None:
    coord = GroupCoordinator(
        tmp_path, GroupConfig(initial_rebalance_delay_ms=0, min_session_timeout_ms=10)
    )
    await coord.start()
    try:
        member_id = await new_member_id(coord)
        result = await wait(join(coord, member_id, session_ms=30, rebalance_ms=30))
        await wait(sync(coord, result, {member_id: b"a"}))

        async def evicted() -> None:
            # describe_group does not refresh the session, unlike a heartbeat
            while coord.describe_group(GROUP).members:  # noqa: ASYNC110 - polls a condition
                await asyncio.sleep(0.005)

        await wait(evicted())
        assert coord.describe_group(GROUP).state == "Dead"  # no members and no offsets left
        assert coord.heartbeat(GROUP, 1, member_id) is ErrorCode.unknown_member_id
    finally:
        await coord.close()


# -- offsets -------------------------------------------------------------------------------


async def test_offsets_commit_fetch_and_survive_restart(tmp_path: Path, clock: FakeClock) -> None:
    coord = GroupCoordinator(tmp_path, GroupConfig(initial_rebalance_delay_ms=0), clock=clock)
    await coord.start()
    member_id = await new_member_id(coord)
    joined = await wait(join(coord, member_id))
    await wait(sync(coord, joined, {member_id: b""}))
    errors = coord.commit_offsets(
        GROUP, 1, member_id, {("t", 0): (10, "meta"), ("t", 1): (20, None)}
    )
    assert set(errors.values()) == {ErrorCode.none}
    assert coord.commit_offsets(GROUP, 1, member_id, {("t", 0): (11, None)}) == {
        ("t", 0): ErrorCode.none
    }
    assert coord.fetch_offsets(GROUP, [("t", 0), ("t", 2)]) == {
        ("t", 0): (11, None),
        ("t", 2): (-1, None),
    }
    await coord.close()

    reopened = GroupCoordinator(tmp_path, clock=clock)
    await reopened.start()
    try:
        assert reopened.fetch_offsets(GROUP, None) == {("t", 0): (11, None), ("t", 1): (20, None)}
        assert reopened.fetch_offsets("other", None) == {}
        assert (GROUP, "", "Empty") in reopened.list_groups()
    finally:
        await reopened.close()


async def test_acknowledged_commit_survives_without_close(tmp_path: Path) -> None:
    """A killed broker never runs close(): the commit must already be on its way to disk."""
    coord = GroupCoordinator(tmp_path)
    await coord.start()
    assert coord.commit_offsets("solo", -1, "", {("t", 3): (7, None)}) == {("t", 3): ErrorCode.none}
    reopened = GroupCoordinator(tmp_path)
    await reopened.start()
    try:
        assert reopened.fetch_offsets("solo", [("t", 3)]) == {("t", 3): (7, None)}
    finally:
        await reopened.close()
        await coord.close()


async def test_standalone_commit_only_without_active_members(
    coordinator: GroupCoordinator,
) -> None:
    assert coordinator.commit_offsets("fresh", -1, "", {("t", 0): (5, None)}) == {
        ("t", 0): ErrorCode.none
    }
    assert coordinator.commit_offsets("fresh", 3, "x", {("t", 0): (6, None)}) == {
        ("t", 0): ErrorCode.unknown_member_id
    }
    assert coordinator.commit_offsets("never-seen", 3, "x", {("t", 0): (6, None)}) == {
        ("t", 0): ErrorCode.illegal_generation
    }
    a_id = await new_member_id(coordinator)
    await wait(join(coordinator, a_id))
    assert coordinator.commit_offsets(GROUP, -1, "", {("t", 0): (1, None)}) == {
        ("t", 0): ErrorCode.unknown_member_id
    }
    assert coordinator.fetch_offsets("fresh", None) == {("t", 0): (5, None)}


async def test_commit_rules_during_rebalance(coordinator: GroupCoordinator) -> None:
    a_id = await new_member_id(coordinator)
    a = await wait(join(coordinator, a_id))
    # CompletingRebalance: the assignment is not known yet
    assert coordinator.commit_offsets(GROUP, 1, a_id, {("t", 0): (1, None)}) == {
        ("t", 0): ErrorCode.rebalance_in_progress
    }
    await wait(sync(coordinator, a, {a_id: b""}))
    b_id = await new_member_id(coordinator)
    join(coordinator, b_id)
    await settle()
    # PreparingRebalance: members commit what they processed before rejoining (as in Kafka)
    assert coordinator.commit_offsets(GROUP, 1, a_id, {("t", 0): (2, None)}) == {
        ("t", 0): ErrorCode.none
    }


async def test_oversized_offset_metadata_is_rejected(coordinator: GroupCoordinator) -> None:
    errors = coordinator.commit_offsets(
        "g2", -1, "", {("t", 0): (1, "x" * 5000), ("t", 1): (2, "ok")}
    )
    assert errors == {("t", 0): ErrorCode.offset_metadata_too_large, ("t", 1): ErrorCode.none}


async def test_delete_topic_offsets(tmp_path: Path) -> None:
    coord = GroupCoordinator(tmp_path)
    await coord.start()
    coord.commit_offsets("g1", -1, "", {("gone", 0): (1, None), ("kept", 0): (2, None)})
    coord.commit_offsets("g2", -1, "", {("gone", 1): (3, None)})
    coord.delete_topic_offsets("gone")
    assert coord.fetch_offsets("g1", None) == {("kept", 0): (2, None)}
    reopened = GroupCoordinator(tmp_path)
    await reopened.start()
    try:
        assert reopened.fetch_offsets("g2", None) == {}
        assert reopened.fetch_offsets("g1", None) == {("kept", 0): (2, None)}
        assert GroupState.EMPTY in {state for _, _, state in reopened.list_groups()}
    finally:
        await reopened.close()
        await coord.close()
