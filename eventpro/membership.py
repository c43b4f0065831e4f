"""Is this worker still sure it owns its partitions? A lease on its consumer-group membership.

A worker owns its partitions only while the group coordinator counts it as a member: a member
whose heartbeats stop for ``broker_session_timeout`` is evicted and its partitions go to the
others. A worker cut off from the broker (paused, starved, or stuck reconnecting after a broker
restart) does not know it was evicted until a heartbeat gets through, and meanwhile it went on
processing the records it had fetched, from tables that no longer get the new owner's writes
(seen in a chaos run: a worker silent for 60 s after a broker restart came back, expired holds
the new owner had already confirmed and refunded their captures, so 23 orders ended both
confirmed and released).

:class:`GroupLease` keeps when the membership was last confirmed (the send time of the last
heartbeat the coordinator accepted, or an assignment). The coordinator cannot have evicted the
worker before that time plus the session timeout; the lease gives the worker half of it, so a
batch decided within the lease has the other half to be written before a new owner could
start. Batching agents wait while the lease has lapsed (:func:`hold_while_in_doubt`): if the
next heartbeat succeeds, the membership was never lost and the batch goes on; if the partitions
were revoked meanwhile, the batch is given up unprocessed and its new owner reads it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from faust.types import AppT, EventT

__all__ = ("LEASE_SHARE", "GroupLease", "group_lease", "hold_while_in_doubt")

logger = logging.getLogger(__name__)

LEASE_SHARE = 0.5
"""Share of the session timeout a confirmation is trusted for."""

POLL_SECONDS = 0.05
"""How often a held batch looks at the lease again."""


class GroupLease:
    """When this worker's group membership was last confirmed, and for how long that holds.

    Heartbeats are confirmed from the Kafka consumer's thread and read on the event loop: a
    float assignment each, atomic in Python. Until the first confirmation (no consumer group:
    tests, tools) the lease never lapses.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._session_timeout_s = 0.0
        self._confirmed_at: float | None = None

    def start(self, session_timeout_s: float) -> None:
        """Track the membership of a consumer with this session timeout (seconds)."""
        if session_timeout_s <= 0:
            raise ValueError(f"session timeout must be positive, got {session_timeout_s}")
        self._session_timeout_s = session_timeout_s

    @property
    def duration_s(self) -> float:
        """How long one confirmation is trusted (seconds)."""
        return self._session_timeout_s * LEASE_SHARE

    def now(self) -> float:
        """The lease's clock (monotonic seconds): take it before sending a heartbeat."""
        return self._clock()

    def confirm(self, sent_at: float) -> None:
        """The coordinator accepted a heartbeat sent at ``sent_at`` (:meth:`now`), or the
        worker was just assigned its partitions."""
        if self._confirmed_at is None or sent_at > self._confirmed_at:
            self._confirmed_at = sent_at

    def lapsed(self) -> bool:
        """True when the coordinator may have evicted this worker by now, or soon."""
        confirmed = self._confirmed_at
        if confirmed is None or self._session_timeout_s <= 0:
            return False
        return self._clock() - confirmed > self.duration_s

    @property
    def confirmed(self) -> bool:
        """Whether a heartbeat or an assignment ever confirmed the membership."""
        return self._confirmed_at is not None

    def unconfirmed_for(self) -> float:
        """Seconds since the last confirmation (0 before the first)."""
        confirmed = self._confirmed_at
        return 0.0 if confirmed is None else max(0.0, self._clock() - confirmed)


group_lease = GroupLease()
"""This worker's lease (confirmed by :class:`~eventpro.transport.EventProConsumerThread`)."""


async def hold_while_in_doubt(
    app: AppT, events: Sequence[EventT], agent: str, lease: GroupLease = group_lease
) -> bool:
    """Wait while ``lease`` has lapsed; False if ``events`` must not be processed any more.

    False when their partitions were revoked or reassigned meanwhile (a new consumer
    generation, or flow control suspended for a rebalance): the caller gives them up
    (:func:`~eventpro.agents.output.withhold_acks`) so their new owner reads them again.
    """
    if not lease.lapsed():
        return True
    generation = app.consumer_generation_id
    logger.warning(
        "%s holds a batch of %d record(s): no heartbeat accepted for %.1f s, so the group may "
        "have given this worker's partitions to another; waiting for the coordinator",
        agent,
        len(events),
        lease.unconfirmed_for(),
    )

    def reassigned() -> bool:
        return app.consumer_generation_id != generation or not app.flow_control.is_active()

    # The lease is confirmed from the consumer's thread, the generation by Faust: no event to
    # await across both, so the held batch polls.
    while lease.lapsed() and not reassigned():  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)
    if reassigned():
        logger.warning(
            "%s gives up a held batch of %d record(s): its partitions were reassigned",
            agent,
            len(events),
        )
        return False
    logger.info("%s goes on: the coordinator accepted a heartbeat again", agent)
    return True
