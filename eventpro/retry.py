"""Where a record goes after its handler failed: a retry topic with backoff, or the DLQ.

Pure routing, no Faust. A transient failure on the main topic sends the record's original key
and bytes to ``retry-1`` with headers saying when it is due, how many attempts were made, which
agent must retry it and where it came from; a failure on ``retry-N`` sends it to
``retry-N+1``; after the last retry topic it goes to ``dlq`` as a
:class:`~eventpro.schemas.DeadLetter` naming the *original* topic, so a replay re-enters the
normal flow. The main partition never waits for a backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from eventpro.schemas import DeadLetter, Envelope, encode
from eventpro.topics import DLQ, RETRY_DELAYS_MS, RETRY_TOPICS

__all__ = (
    "H_AGENT",
    "H_ATTEMPTS",
    "H_DUE_MS",
    "H_ERROR",
    "H_OFFSET",
    "H_PARTITION",
    "H_TOPIC",
    "RawOutgoing",
    "RawRecord",
    "dead_letter_record",
    "headers_dict",
    "route_failure",
)

logger = logging.getLogger(__name__)

H_ATTEMPTS = "eventpro-attempts"
H_DUE_MS = "eventpro-due-ms"
H_AGENT = "eventpro-agent"
H_TOPIC = "eventpro-original-topic"
H_PARTITION = "eventpro-original-partition"
H_OFFSET = "eventpro-original-offset"
H_ERROR = "eventpro-last-error"


def headers_dict(
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None,
) -> dict[str, bytes]:
    """Kafka headers (a list of pairs or a mapping) as a dict; the last value of a name wins."""
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(name): bytes(value or b"") for name, value in items}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A consumed record as bytes, with coordinates and headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def attempts(self) -> int:
        """Attempts already made on this record (0 on its original topic)."""
        return _int_header(self.headers, H_ATTEMPTS, 0)

    @property
    def due_ms(self) -> int:
        """When a retried record may be attempted again (0 = now)."""
        return _int_header(self.headers, H_DUE_MS, 0)

    @property
    def origin(self) -> tuple[str, int, int]:
        """``(topic, partition, offset)`` where the record was first consumed."""
        topic = self.headers.get(H_TOPIC)
        if topic is None:
            return self.topic, self.partition, self.offset
        return (
            topic.decode("utf-8"),
            _int_header(self.headers, H_PARTITION, -1),
            _int_header(self.headers, H_OFFSET, -1),
        )

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _int_header(headers: Mapping[str, bytes], name: str, default: int) -> int:
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return default


@dataclass(frozen=True, slots=True)
class RawOutgoing:
    """A record to produce as-is: logical topic, key and value bytes, headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def dead_letter_record(
    record: RawRecord,
    *,
    reason: str,
    error: str,
    agent: str,
    attempts: int,
    correlation_id: str | None = None,
    source: str = "eventpro",
) -> RawOutgoing:
    """The ``dlq`` record for ``record``: original coordinates, key and bytes, and why."""
    topic, partition, offset = record.origin
    letter = DeadLetter.from_record(
        reason=reason,
        error=error[:2000],
        attempts=attempts,
        agent=agent,
        topic=topic,
        partition=partition,
        offset=offset,
        key=record.key,
        value=record.value,
        correlation_id=correlation_id,
    )
    envelope = Envelope.new(letter, source=source, correlation_id=correlation_id)
    return RawOutgoing(DLQ, None, encode(envelope))


def route_failure(
    record: RawRecord,
    error: str,
    *,
    agent: str,
    now_ms: int,
    correlation_id: str | None = None,
    delays_ms: Sequence[int] = RETRY_DELAYS_MS,
    retry_topics: Sequence[str] = RETRY_TOPICS,
) -> RawOutgoing:
    """Where ``record`` goes after a transient failure of its ``attempts + 1``-th attempt.

    ``retry-N`` (due at ``now_ms + delays_ms[N-1]``) while retry topics remain, else the DLQ
    with ``reason="retries_exhausted"`` and the total attempt count.
    """
    attempts = record.attempts + 1
    if attempts > len(retry_topics):
        return dead_letter_record(
            record,
            reason="retries_exhausted",
            error=error,
            agent=agent,
            attempts=attempts,
            correlation_id=correlation_id,
        )
    topic, partition, offset = record.origin
    headers = (
        (H_ATTEMPTS, str(attempts).encode("ascii")),
        (H_DUE_MS, str(now_ms + delays_ms[attempts - 1]).encode("ascii")),
        (H_AGENT, agent.encode("utf-8")),
        (H_TOPIC, topic.encode("utf-8")),
        (H_PARTITION, str(partition).encode("ascii")),
        (H_OFFSET, str(offset).encode("ascii")),
        (H_ERROR, error[:500].encode("utf-8")),
    )
    return RawOutgoing(retry_topics[attempts - 1], record.key, record.value, headers)
