"""The one error a consumer gets for a record it cannot read."""

from __future__ import annotations

import logging
from enum import StrEnum

from eventpro.exceptions import EventProError

__all__ = ("SchemaError", "SchemaErrorReason")

logger = logging.getLogger(__name__)


class SchemaErrorReason(StrEnum):
    """Short machine-readable cause, stored as the dead letter's ``reason``."""

    INVALID_JSON = "invalid_json"
    NOT_AN_ENVELOPE = "not_an_envelope"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    VALIDATION_ERROR = "validation_error"


class SchemaError(EventProError):
    """Raised by :func:`eventpro.schemas.decode` when bytes are not a readable event.

    The agent must not retry: send the record to the dead-letter topic with ``reason`` and
    ``str(error)``, then continue. Fix the producer (or add an upcaster) and replay the DLQ.
    """

    def __init__(self, reason: SchemaErrorReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message
