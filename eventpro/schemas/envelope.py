"""The versioned envelope around every event, and the base class of event payloads."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from eventpro.schemas.errors import SchemaError, SchemaErrorReason

__all__ = ("Envelope", "EventData", "Id", "new_id")

logger = logging.getLogger(__name__)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^/\s]+$")]
"""An identifier on the wire: 1-128 characters, no ``/`` and no whitespace."""

D = TypeVar("D", bound="EventData")


def new_id() -> str:
    """A fresh random id (uuid4 string) for events, requests and correlation."""
    return str(uuid.uuid4())


class EventData(BaseModel):
    """Base of every event payload (the envelope's ``data``).

    Subclasses set ``EVENT_TYPE`` and ``SCHEMA_VERSION`` (the version they describe, the
    current one). Values are frozen; unknown fields are ignored so producers can add fields.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    EVENT_TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    @property
    def partition_key(self) -> str | None:
        """The Kafka key of the record (the event's ``event_id``), or ``None`` for unkeyed."""
        value = getattr(self, "event_id", None)
        return value if isinstance(value, str) else None


class Envelope(BaseModel):
    """``{"event_type", "schema_version", "event_id", "occurred_at", "source",
    "correlation_id", "causation_id", "data"}``.

    ``event_id`` identifies this message; ``correlation_id`` is copied through the whole saga
    (it defaults to ``event_id`` when a producer omits it); ``causation_id`` is the
    ``event_id`` of the message that caused this one. After :func:`eventpro.schemas.decode`,
    ``data`` is the typed payload at its current ``schema_version`` (older versions upcast).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: str
    schema_version: int
    event_id: str = Field(min_length=1)
    occurred_at: datetime
    source: str = "unknown"
    correlation_id: str = Field(min_length=1)
    causation_id: str | None = None
    data: EventData

    @model_validator(mode="before")
    @classmethod
    def _default_correlation(cls, values: Any) -> Any:
        if isinstance(values, dict) and not values.get("correlation_id") and values.get("event_id"):
            values = {**values, "correlation_id": values["event_id"]}
        return values

    @classmethod
    def new(
        cls,
        data: EventData,
        *,
        source: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        """Wrap ``data`` in a new envelope (random ``event_id``, now as ``occurred_at``).

        Without ``correlation_id`` the new event starts a saga: its correlation id is its id.
        """
        eid = event_id or new_id()
        return cls(
            event_type=data.EVENT_TYPE,
            schema_version=data.SCHEMA_VERSION,
            event_id=eid,
            occurred_at=occurred_at or datetime.now(UTC),
            source=source,
            correlation_id=correlation_id or eid,
            causation_id=causation_id,
            data=data,
        )

    def caused(
        self, data: EventData, *, source: str = "eventpro", event_id: str | None = None
    ) -> Envelope:
        """The envelope of an event caused by this one: same correlation, causation = my id."""
        return Envelope.new(
            data,
            source=source,
            correlation_id=self.correlation_id,
            causation_id=self.event_id,
            event_id=event_id,
        )

    def data_as(self, cls: type[D]) -> D:
        """``data`` typed as ``cls``.

        :raises SchemaError: the payload is another event type.
        """
        if not isinstance(self.data, cls):
            raise SchemaError(
                SchemaErrorReason.UNKNOWN_EVENT_TYPE,
                f"expected {cls.EVENT_TYPE}, got {self.event_type}",
            )
        return self.data
