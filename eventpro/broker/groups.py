"""Consumer-group coordinator: the classic JoinGroup/SyncGroup protocol plus committed offsets.

It follows Apache Kafka's (2.x+) group coordinator where clients can tell the difference:

- KIP-394 two-step join: a JoinGroup without member id (v4+) is answered at once with
  MEMBER_ID_REQUIRED and a generated id, which is remembered as pending for the session timeout.
- ``group.initial.rebalance.delay.ms``: when an empty group gets its first member the join is
  held for the initial delay (extended by each new joiner, capped by the rebalance timeout), so
  workers started together land in one generation and a lone worker is assigned within seconds.
- A rebalance completes when every member has rejoined, or when the rebalance timeout passes;
  members that did not rejoin by then are dropped from the group (Faust does not always send
  LeaveGroup; keeping a dead member as leader would hang SyncGroup forever).
- Members that send nothing for their session timeout are evicted and the group rebalances.
- Member metadata and assignments are opaque bytes, so Faust's own assignor works.

Pure asyncio, no networking: the handlers in :mod:`eventpro.broker.group_handlers` translate kio
requests into these calls. Time comes from an injectable clock so tests can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kio.schema.errors import ErrorCode

from eventpro.broker.group_offsets import OffsetStore, PartitionOffsets, TopicPartition

__all__ = (
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupMember",
    "GroupState",
    "JoinResult",
    "MemberDescription",
    "SyncResult",
)

logger = logging.getLogger(__name__)

_MAX_TIMER_SLEEP_S = 1.0
_MIN_TIMER_SLEEP_S = 0.001
_MAX_OFFSET_METADATA_CHARS = 4096


@dataclass(frozen=True)
class GroupConfig:
    """Group coordinator settings.

    :param initial_rebalance_delay_ms: Kafka's ``group.initial.rebalance.delay.ms``: how long the
        first join of an empty group is held so that workers started together share one
        generation (extended by each new joiner, capped by the rebalance timeout). ``0`` completes
        the join as soon as every member has joined. Default - ``3000``.
    :param min_session_timeout_ms: smallest session timeout a member may ask for.
        Default - ``1000``.
    :param max_session_timeout_ms: largest session timeout a member may ask for.
        Default - ``300000``.
    :param fsync_offsets: ``fsync`` every offset commit instead of only writing it to the OS
        (which survives a killed broker process, not a power loss). Default - ``False``.
    """

    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 1000
    max_session_timeout_ms: int = 300_000
    fsync_offsets: bool = False


class GroupState(enum.StrEnum):
    """Group states, named as Kafka's DescribeGroups/ListGroups report them."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True)
class GroupMember:
    """A member as the leader sees it in its JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True)
class JoinResult:
    """Outcome of a JoinGroup; ``members`` is filled for the leader only."""

    error: ErrorCode
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple[GroupMember, ...] = ()


@dataclass(frozen=True)
class SyncResult:
    """Outcome of a SyncGroup: the member's assignment (opaque bytes from the leader)."""

    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True)
class MemberDescription:
    """One member in a DescribeGroups answer."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupDescription:
    """A DescribeGroups answer; unknown groups are reported ``Dead`` without members."""

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...] = ()
    error: ErrorCode = ErrorCode.none


@dataclass(eq=False)
class _Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    last_seen: float
    assignment: bytes = b""
    join_future: asyncio.Future[JoinResult] | None = None
    sync_future: asyncio.Future[SyncResult] | None = None

    @property
    def awaiting_join(self) -> bool:
        return self.join_future is not None and not self.join_future.done()

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_future is not None and not self.sync_future.done()

    @property
    def session_deadline(self) -> float:
        return self.last_seen + self.session_timeout_ms / 1000

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""


@dataclass(eq=False)
class _Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, _Member] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)
    join_deadline: float | None = None
    initial_delay: bool = False
    initial_remaining_ms: int = 0
    new_member_added: bool = False
    sync_deadline: float | None = None

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)


def _resolve(
    future: asyncio.Future[JoinResult] | asyncio.Future[SyncResult] | None, value: object
) -> None:
    if future is not None and not future.done():
        future.set_result(value)  # type: ignore[arg-type]


class GroupCoordinator:
    """All consumer groups of the broker and their committed offsets.

    :param data_dir: directory of the durable offset log.
    :param config: timing and limits. Default - ``GroupConfig()``.
    :param clock: monotonic seconds; injectable so tests can move time.
        Default - ``time.monotonic``.
    """

    def __init__(
        self,
        data_dir: Path,
        config: GroupConfig = GroupConfig(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self._store = OffsetStore(Path(data_dir), fsync=config.fsync_offsets)
        self._groups: dict[str, _Group] = {}
        self._timer_task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load committed offsets and start the task that expires sessions and rebalances."""
        self._store.open()
        self._groups = {}
        for group_id in self._store.groups():
            self._groups.setdefault(group_id, _Group(group_id))
        self._running = True
        self._timer_task = asyncio.create_task(self._run_timers_forever(), name="group-timers")

    async def close(self) -> None:
        """Answer waiting JoinGroup/SyncGroup calls (clients retry) and persist offsets."""
        self._running = False
        self._wakeup.set()
        if self._timer_task is not None:
            # the flag stops the loop even if asyncio.wait_for swallows the cancellation (3.11)
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
            self._timer_task = None
        for group in self._groups.values():
            for member in group.members.values():
                _resolve(
                    member.join_future,
                    JoinResult(ErrorCode.coordinator_not_available, member.member_id),
                )
                _resolve(member.sync_future, SyncResult(ErrorCode.coordinator_not_available))
        self._store.close()

    # -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ------------------------------------

    async def join_group(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member_id: bool,
    ) -> JoinResult:
        """Join (or rejoin) a group; waits until the rebalance completes."""
        if not self._running:
            return JoinResult(ErrorCode.coordinator_not_available, member_id)
        if not group_id:
            return JoinResult(ErrorCode.invalid_group_id, member_id)
        config = self.config
        if not config.min_session_timeout_ms <= session_timeout_ms <= config.max_session_timeout_ms:
            return JoinResult(ErrorCode.invalid_session_timeout, member_id)
        if rebalance_timeout_ms <= 0:
            rebalance_timeout_ms = session_timeout_ms
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = _Group(group_id)
        if not self._supports_protocols(group, member_id, protocol_type, protocols):
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id)
        now = self._clock()

        def new_member(new_id: str) -> _Member:
            return _Member(
                member_id=new_id,
                group_instance_id=group_instance_id,
                client_id=client_id,
                client_host=client_host,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                protocol_type=protocol_type,
                protocols=list(protocols),
                last_seen=now,
            )

        if not member_id:
            new_id = f"{client_id}-{uuid.uuid4()}"
            if group_instance_id is None and require_known_member_id:
                group.pending[new_id] = now + session_timeout_ms / 1000
                self._wakeup.set()
                return JoinResult(ErrorCode.member_id_required, new_id)
            if group_instance_id is not None:
                self._fence_static_member(group, group_instance_id)
            future = self._add_member(group, new_member(new_id))
        elif member_id in group.pending:
            del group.pending[member_id]
            future = self._add_member(group, new_member(member_id))
        elif member_id in group.members:
            member = group.members[member_id]
            member.client_id, member.client_host = client_id, client_host
            member.session_timeout_ms = session_timeout_ms
            member.rebalance_timeout_ms = rebalance_timeout_ms
            member.last_seen = now
            future = self._rejoin(group, member, list(protocols))
        else:
            return JoinResult(ErrorCode.unknown_member_id, member_id)
        return await asyncio.shield(future)

    async def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> SyncResult:
        """Hand out the leader's assignment; followers wait until the leader's SyncGroup."""
        if not self._running:
            return SyncResult(ErrorCode.coordinator_not_available)
        group = self._groups.get(group_id)
        if group is None or member_id not in group.members:
            return SyncResult(ErrorCode.unknown_member_id)
        if generation_id != group.generation_id:
            return SyncResult(ErrorCode.illegal_generation)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return SyncResult(ErrorCode.inconsistent_group_protocol)
        member = group.members[member_id]
        member.last_seen = self._clock()
        if group.state is GroupState.PREPARING_REBALANCE:
            return SyncResult(ErrorCode.rebalance_in_progress)
        if group.state is GroupState.STABLE:
            return self._sync_result(group, member)
        _resolve(member.sync_future, SyncResult(ErrorCode.rebalance_in_progress))
        future: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        member.sync_future = future
        if member_id == group.leader_id:
            self._apply_assignments(group, assignments)
        return await asyncio.shield(future)

    def heartbeat(self, group_id: str, generation_id: int, member_id: str) -> ErrorCode:
        """Keep a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin."""
        if not self._running:
            return ErrorCode.coordinator_not_available
        group = self._groups.get(group_id)
        if group is None or member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        group.members[member_id].last_seen = self._clock()
        if group.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave_group(
        self, group_id: str, member_ids: list[str]
    ) -> tuple[ErrorCode, dict[str, ErrorCode]]:
        """Remove members (a rebalance follows); returns (group error, error per member)."""
        if not self._running:
            return ErrorCode.coordinator_not_available, {}
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.none, {
                member_id: ErrorCode.unknown_member_id for member_id in member_ids
            }
        errors: dict[str, ErrorCode] = {}
        removed: list[str] = []
        for member_id in member_ids:
            if member_id in group.pending:
                del group.pending[member_id]
                errors[member_id] = ErrorCode.none
            elif member_id in group.members:
                self._remove_member(group, member_id, ErrorCode.unknown_member_id)
                removed.append(member_id)
                errors[member_id] = ErrorCode.none
            else:
                errors[member_id] = ErrorCode.unknown_member_id
        if removed:
            logger.info("group %s: member(s) %s left", group_id, ", ".join(removed))
            self._after_member_removed(group, f"member(s) {', '.join(removed)} left")
        elif group.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(group)
        return ErrorCode.none, errors

    # -- queries ---------------------------------------------------------------------------

    def list_groups(self) -> list[tuple[str, str, str]]:
        """(group_id, protocol_type, state) of every known group."""
        return [
            (group.group_id, group.protocol_type or "", str(group.state))
            for group in self._groups.values()
        ]

    def describe_group(self, group_id: str) -> GroupDescription:
        """State and members of a group; metadata and assignments only when Stable (as Kafka)."""
        group = self._groups.get(group_id)
        if group is None:
            return GroupDescription(group_id, str(GroupState.DEAD), "", "")
        stable = group.state is GroupState.STABLE
        members = tuple(
            MemberDescription(
                member_id=member.member_id,
                group_instance_id=member.group_instance_id,
                client_id=member.client_id,
                client_host=member.client_host,
                metadata=member.metadata(group.protocol_name) if stable else b"",
                assignment=member.assignment if stable else b"",
            )
            for member in group.members.values()
        )
        return GroupDescription(
            group_id=group_id,
            state=str(group.state),
            protocol_type=group.protocol_type or "",
            protocol=(group.protocol_name or "") if stable else "",
            members=members,
        )

    def generation(self, group_id: str) -> int:
        """Current generation of a group (0 = never rebalanced)."""
        group = self._groups.get(group_id)
        return group.generation_id if group is not None else 0

    # -- offsets ---------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        offsets: dict[TopicPartition, tuple[int, str | None]],
    ) -> dict[TopicPartition, ErrorCode]:
        """Persist committed offsets before answering; errors are per partition."""
        error = self._commit_error(group_id, generation_id, member_id)
        if error is not ErrorCode.none:
            return dict.fromkeys(offsets, error)
        results: dict[TopicPartition, ErrorCode] = {}
        accepted: PartitionOffsets = {}
        for tp, (offset, metadata) in offsets.items():
            if metadata is not None and len(metadata) > _MAX_OFFSET_METADATA_CHARS:
                results[tp] = ErrorCode.offset_metadata_too_large
            else:
                accepted[tp] = (offset, metadata)
        try:
            self._store.commit(group_id, accepted)
        except OSError:
            logger.exception(
                "group %s: could not persist %d committed offsets to %s; check the disk "
                "(space, permissions) - the consumer will retry",
                group_id,
                len(accepted),
                self._store.path,
            )
            results.update(dict.fromkeys(accepted, ErrorCode.kafka_storage_error))
            return results
        results.update(dict.fromkeys(accepted, ErrorCode.none))
        group = self._groups.setdefault(group_id, _Group(group_id))
        member = group.members.get(member_id)
        if member is not None:
            member.last_seen = self._clock()
        return results

    def validate_member(self, group_id: str, generation_id: int, member_id: str) -> ErrorCode:
        """The error an offset commit from this member would get (TxnOffsetCommit v3 fencing)."""
        return self._commit_error(group_id, generation_id, member_id)

    def apply_transactional_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, tuple[int, str | None]]
    ) -> None:
        """Make a committed transaction's offsets the group's committed offsets.

        Raises ``OSError`` if they could not be persisted (the coordinator retries).
        """
        self._store.commit(group_id, offsets)
        self._groups.setdefault(group_id, _Group(group_id))

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None
    ) -> dict[TopicPartition, tuple[int, str | None]]:
        """Committed (offset, metadata); ``None`` = every committed partition; unknown -> -1."""
        committed = self._store.offsets(group_id)
        if partitions is None:
            return dict(committed)
        return {tp: committed.get(tp, (-1, None)) for tp in partitions}

    def delete_topic_offsets(self, topic: str) -> None:
        """Forget committed offsets of a deleted topic in every group."""
        try:
            affected = self._store.delete_topic(topic)
        except OSError:
            logger.exception(
                "could not record the deletion of offsets for topic %s in %s; they will "
                "reappear after a restart until the topic is deleted again",
                topic,
                self._store.path,
            )
            return
        if affected:
            logger.info("deleted committed offsets of topic %s in groups %s", topic, affected)

    # -- timers ----------------------------------------------------------------------------

    def run_timers(self) -> None:
        """Apply every deadline that has passed by ``clock()``.

        The background task calls this; tests with a fake clock call it after moving the clock.
        """
        now = self._clock()
        for group in list(self._groups.values()):
            self._expire_pending(group, now)
            if (
                group.state is GroupState.PREPARING_REBALANCE
                and group.join_deadline is not None
                and group.join_deadline <= now
            ):
                self._on_join_deadline(group, now)
            if (
                group.state is GroupState.COMPLETING_REBALANCE
                and group.sync_deadline is not None
                and group.sync_deadline <= now
            ):
                self._on_sync_deadline(group)
            self._expire_sessions(group, now)
            if (
                group.state is GroupState.EMPTY
                and not group.members
                and not group.pending
                and not self._store.offsets(group.group_id)
            ):
                del self._groups[group.group_id]

    def _next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for group in self._groups.values():
            deadlines.extend(group.pending.values())
            if group.state is GroupState.PREPARING_REBALANCE and group.join_deadline is not None:
                deadlines.append(group.join_deadline)
            if group.state is GroupState.COMPLETING_REBALANCE and group.sync_deadline is not None:
                deadlines.append(group.sync_deadline)
            deadlines.extend(
                m.session_deadline
                for m in group.members.values()
                if not m.awaiting_join and not m.awaiting_sync
            )
        return min(deadlines, default=None)

    async def _run_timers_forever(self) -> None:
        while self._running:
            self._wakeup.clear()
            try:
                self.run_timers()
            except Exception:
                logger.exception("group coordinator timers failed; retrying")
            deadline = self._next_deadline()
            delay = _MAX_TIMER_SLEEP_S if deadline is None else deadline - self._clock()
            delay = min(max(delay, _MIN_TIMER_SLEEP_S), _MAX_TIMER_SLEEP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    # -- state machine internals -----------------------------------------------------------

    def _supports_protocols(
        self,
        group: _Group,
        member_id: str,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
    ) -> bool:
        if not protocol_type or not protocols:
            return False
        others = [m for m in group.members.values() if m.member_id != member_id]
        if not others:
            return True
        if protocol_type != group.protocol_type:
            return False
        common = {name for name, _ in protocols}
        for other in others:
            common &= set(other.protocol_names())
        return bool(common)

    def _add_member(self, group: _Group, member: _Member) -> asyncio.Future[JoinResult]:
        future: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        member.join_future = future
        if not group.members:
            group.protocol_type = member.protocol_type
        group.members[member.member_id] = member
        if group.leader_id is None:
            group.leader_id = member.member_id
        logger.debug("group %s: member %s joined", group.group_id, member.member_id)
        if group.state is GroupState.PREPARING_REBALANCE:
            group.new_member_added = True
            self._maybe_complete_join(group)
        else:
            self._prepare_rebalance(group, f"member {member.member_id} joined")
        return future

    def _rejoin(
        self, group: _Group, member: _Member, protocols: list[tuple[str, bytes]]
    ) -> asyncio.Future[JoinResult]:
        future: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        unchanged = protocols == member.protocols
        if group.state is GroupState.COMPLETING_REBALANCE and unchanged:
            future.set_result(self._join_result(group, member))
            return future
        if group.state is GroupState.STABLE and unchanged and member.member_id != group.leader_id:
            future.set_result(self._join_result(group, member))
            return future
        _resolve(member.join_future, JoinResult(ErrorCode.rebalance_in_progress, member.member_id))
        member.protocols = protocols
        member.join_future = future
        if group.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(group)
        else:
            self._prepare_rebalance(group, f"member {member.member_id} rejoined")
        return future

    def _fence_static_member(self, group: _Group, group_instance_id: str) -> None:
        for member in list(group.members.values()):
            if member.group_instance_id == group_instance_id:
                self._remove_member(group, member.member_id, ErrorCode.fenced_instance_id)
                logger.info(
                    "group %s: static member %s replaced by a new instance",
                    group.group_id,
                    member.member_id,
                )

    def _prepare_rebalance(self, group: _Group, reason: str) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            for member in group.members.values():
                _resolve(member.sync_future, SyncResult(ErrorCode.rebalance_in_progress))
        for member in group.members.values():
            member.assignment = b""
        now = self._clock()
        rebalance_timeout_ms = group.rebalance_timeout_ms()
        initial_delay_ms = self.config.initial_rebalance_delay_ms
        group.initial_delay = group.state is GroupState.EMPTY and initial_delay_ms > 0
        if group.initial_delay:
            group.new_member_added = False
            group.initial_remaining_ms = max(rebalance_timeout_ms - initial_delay_ms, 0)
            group.join_deadline = now + initial_delay_ms / 1000
        else:
            group.join_deadline = now + rebalance_timeout_ms / 1000
        group.state = GroupState.PREPARING_REBALANCE
        group.sync_deadline = None
        logger.info(
            "group %s: preparing to rebalance (generation %d, %s)",
            group.group_id,
            group.generation_id,
            reason,
        )
        self._wakeup.set()
        self._maybe_complete_join(group)

    def _maybe_complete_join(self, group: _Group) -> None:
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and not group.initial_delay
            and not group.pending
            and all(member.awaiting_join for member in group.members.values())
        ):
            self._complete_join(group)

    def _on_join_deadline(self, group: _Group, now: float) -> None:
        if group.initial_delay and group.new_member_added and group.initial_remaining_ms > 0:
            delay_ms = min(self.config.initial_rebalance_delay_ms, group.initial_remaining_ms)
            group.initial_remaining_ms -= delay_ms
            group.new_member_added = False
            group.join_deadline = now + delay_ms / 1000
            return
        late = [m.member_id for m in group.members.values() if not m.awaiting_join]
        for member_id in late:
            logger.warning(
                "group %s: dropping member %s, which did not rejoin within the rebalance "
                "timeout (%d ms)",
                group.group_id,
                member_id,
                group.rebalance_timeout_ms(),
            )
            self._remove_member(group, member_id, ErrorCode.unknown_member_id)
        self._complete_join(group)

    def _on_sync_deadline(self, group: _Group) -> None:
        late = [m.member_id for m in group.members.values() if not m.awaiting_sync]
        for member_id in late:
            logger.warning(
                "group %s: dropping member %s, which did not send SyncGroup within the "
                "rebalance timeout (%d ms)",
                group.group_id,
                member_id,
                group.rebalance_timeout_ms(),
            )
            self._remove_member(group, member_id, ErrorCode.unknown_member_id)
        self._after_member_removed(group, "SyncGroup timed out")

    def _complete_join(self, group: _Group) -> None:
        group.join_deadline = None
        group.initial_delay = False
        group.new_member_added = False
        group.generation_id += 1
        if not group.members:
            group.state = GroupState.EMPTY
            group.protocol_name = None
            group.leader_id = None
            logger.info("group %s: generation %d is empty", group.group_id, group.generation_id)
            return
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members))
        group.protocol_name = self._select_protocol(group)
        group.state = GroupState.COMPLETING_REBALANCE
        now = self._clock()
        group.sync_deadline = now + group.rebalance_timeout_ms() / 1000
        logger.info(
            "group %s: generation %d with %d member(s) %s (leader %s, protocol %s)",
            group.group_id,
            group.generation_id,
            len(group.members),
            sorted(group.members),
            group.leader_id,
            group.protocol_name,
        )
        for member in group.members.values():
            member.last_seen = now
            _resolve(member.join_future, self._join_result(group, member))
        self._wakeup.set()

    def _select_protocol(self, group: _Group) -> str:
        members = list(group.members.values())
        candidates = set(members[0].protocol_names())
        for member in members[1:]:
            candidates &= set(member.protocol_names())
        leader = group.members[group.leader_id] if group.leader_id else members[0]
        preference = [name for name in leader.protocol_names() if name in candidates]
        votes = dict.fromkeys(preference, 0)
        for member in members:
            vote = next(name for name in member.protocol_names() if name in candidates)
            votes[vote] += 1
        return max(preference, key=lambda name: votes[name])

    def _join_result(self, group: _Group, member: _Member) -> JoinResult:
        is_leader = member.member_id == group.leader_id
        members = (
            tuple(
                GroupMember(m.member_id, m.group_instance_id, m.metadata(group.protocol_name))
                for m in group.members.values()
            )
            if is_leader
            else ()
        )
        return JoinResult(
            error=ErrorCode.none,
            member_id=member.member_id,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader_id=group.leader_id or "",
            members=members,
        )

    def _sync_result(self, group: _Group, member: _Member) -> SyncResult:
        return SyncResult(
            ErrorCode.none, group.protocol_type, group.protocol_name, member.assignment
        )

    def _apply_assignments(self, group: _Group, assignments: Mapping[str, bytes]) -> None:
        now = self._clock()
        for member_id, member in group.members.items():
            member.assignment = assignments.get(member_id, b"")
        group.state = GroupState.STABLE
        group.sync_deadline = None
        for member in group.members.values():
            if member.awaiting_sync:
                member.last_seen = now
                _resolve(member.sync_future, self._sync_result(group, member))
        logger.info("group %s: generation %d is stable", group.group_id, group.generation_id)
        self._wakeup.set()

    def _remove_member(self, group: _Group, member_id: str, error: ErrorCode) -> None:
        member = group.members.pop(member_id)
        _resolve(member.join_future, JoinResult(error, member_id))
        _resolve(member.sync_future, SyncResult(error))
        if group.leader_id == member_id:
            joined = [m.member_id for m in group.members.values() if m.awaiting_join]
            group.leader_id = (joined or list(group.members) or [None])[0]

    def _after_member_removed(self, group: _Group, reason: str) -> None:
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, reason)
        elif group.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(group)

    def _expire_pending(self, group: _Group, now: float) -> None:
        expired = [member_id for member_id, deadline in group.pending.items() if deadline <= now]
        for member_id in expired:
            del group.pending[member_id]
            logger.debug(
                "group %s: pending member %s never rejoined; forgotten", group.group_id, member_id
            )
        if expired:
            self._maybe_complete_join(group)

    def _expire_sessions(self, group: _Group, now: float) -> None:
        expired = [
            member
            for member in group.members.values()
            if not member.awaiting_join
            and not member.awaiting_sync
            and member.session_deadline <= now
        ]
        for member in expired:
            logger.warning(
                "group %s: evicting member %s (client %s, %s): no heartbeat within its session "
                "timeout of %d ms",
                group.group_id,
                member.member_id,
                member.client_id,
                member.client_host,
                member.session_timeout_ms,
            )
            self._remove_member(group, member.member_id, ErrorCode.unknown_member_id)
        if expired:
            self._after_member_removed(group, f"{len(expired)} member(s) timed out")

    def _commit_error(self, group_id: str, generation_id: int, member_id: str) -> ErrorCode:
        if not self._running:
            return ErrorCode.coordinator_not_available
        if not group_id:
            return ErrorCode.invalid_group_id
        group = self._groups.get(group_id)
        if group is None or (generation_id < 0 and group.state is GroupState.EMPTY):
            return ErrorCode.none if generation_id < 0 else ErrorCode.illegal_generation
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        if group.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none
