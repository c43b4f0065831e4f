"""Every EventPro topic in one place: name, key, partitions, retention, and what flows there.

Co-partitioning rule: ``ticket-requests``, ``payments`` and ``inventory-ticks`` feed the
inventory agent, which writes tables keyed by event; they must have the same partition count
and be keyed by ``event_id`` with Kafka's default (murmur2) partitioner, so partition *p* of
each belongs to the same worker. :func:`partition_for_key` is that partitioner, exactly.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

from eventpro.settings import Settings

__all__ = (
    "DLQ",
    "INVENTORY_TICKS",
    "NOTIFICATIONS",
    "ORDERS",
    "PAYMENTS",
    "RESERVATIONS",
    "RETRY_DELAYS_MS",
    "RETRY_TOPICS",
    "TICKET_REQUESTS",
    "CleanupPolicy",
    "TopicSpec",
    "all_topics",
    "murmur2",
    "partition_for_key",
    "topic_spec",
)

logger = logging.getLogger(__name__)

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

TICKET_REQUESTS = "ticket-requests"
RESERVATIONS = "reservations"
PAYMENTS = "payments"
ORDERS = "orders"
NOTIFICATIONS = "notifications"
INVENTORY_TICKS = "inventory-ticks"
RETRY_TOPICS: tuple[str, ...] = ("retry-1", "retry-2", "retry-3")
RETRY_DELAYS_MS: tuple[int, ...] = (1_000, 5_000, 30_000)
"""How long a record waits in ``retry-N`` before its next attempt (exponential backoff)."""
DLQ = "dlq"

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic.

    :param name: full topic name (with the settings' prefix).
    :param key: what the record key is (``"event_id"``, or ``None`` for unkeyed).
    :param partitions: partition count; ``None`` leaves it to the broker default.
    :param logical: the name without prefix (one of this module's constants).
    """

    name: str
    key: str | None
    description: str
    cleanup_policy: CleanupPolicy
    retention_ms: int
    partitions: int | None
    logical: str


def all_topics(settings: Settings) -> list[TopicSpec]:
    """Every EventPro topic for these settings (Faust's own changelog topics excluded)."""
    n = settings.partitions

    def spec(
        logical: str,
        key: str | None,
        description: str,
        retention_ms: int,
        partitions: int | None = n,
    ) -> TopicSpec:
        return TopicSpec(
            name=settings.topic_name(logical),
            key=key,
            description=description,
            cleanup_policy="delete",
            retention_ms=retention_ms,
            partitions=partitions,
            logical=logical,
        )

    topics = [
        spec(
            TICKET_REQUESTS,
            "event_id",
            "TicketRequested from apps and the API, plus EventCreated catalog commands, so the "
            "partition owning an event sees its creation and its requests in order. "
            "Consumer: inventory agent.",
            7 * _DAY_MS,
        ),
        spec(
            RESERVATIONS,
            "event_id",
            "Inventory decisions: SeatsReserved, RequestRejected, SeatsReleased, "
            "RefundRequested. Consumers: payments, notifications, analytics.",
            7 * _DAY_MS,
        ),
        spec(
            PAYMENTS,
            "event_id",
            "Gateway results back to the inventory: PaymentCaptured, PaymentDeclined, "
            "RefundIssued. Co-partitioned with ticket-requests. Consumer: inventory agent.",
            7 * _DAY_MS,
        ),
        spec(
            ORDERS,
            "event_id",
            "OrderConfirmed with ticket ids. Consumers: notifications, analytics.",
            30 * _DAY_MS,
        ),
        spec(
            NOTIFICATIONS,
            "event_id",
            "NotificationSent, one per terminal outcome.",
            3 * _DAY_MS,
        ),
        spec(
            INVENTORY_TICKS,
            None,
            "HoldExpiryTick from the leader's timer, produced to each partition explicitly; "
            "co-partitioned with ticket-requests. Consumer: inventory agent.",
            _HOUR_MS,
        ),
    ]
    for logical, delay in zip(RETRY_TOPICS, RETRY_DELAYS_MS, strict=True):
        topics.append(
            spec(
                logical,
                "event_id",
                f"Records whose handler failed transiently, retried after {delay // 1000} s "
                "(original bytes and key, attempt count in headers).",
                _DAY_MS,
            )
        )
    topics.append(
        spec(
            DLQ,
            None,
            "DeadLetter: records no agent could process, with reason, error, attempts, agent, "
            "correlation id, coordinates and original bytes. `eventpro dlq list|replay`.",
            30 * _DAY_MS,
            partitions=1,
        )
    )
    return topics


def topic_spec(settings: Settings, logical: str) -> TopicSpec:
    """The spec of one logical topic.

    :raises KeyError: ``logical`` is not an EventPro topic.
    """
    for spec in all_topics(settings):
        if spec.logical == logical:
            return spec
    raise KeyError(f"unknown topic {logical!r}; see eventpro.topics.all_topics()")


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (signed 32-bit result, as in Java)."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    end = length - (length % 4)
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = length % 4
    if extra >= 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


@functools.lru_cache(maxsize=65_536)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks: ``toPositive(murmur2(key)) % n``.

    Memoised: records are keyed by event id, so a few keys come back for every record (pure
    Python murmur2 is the slow part).

    :raises ValueError: ``partitions < 1``.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
