"""Bytes <-> :class:`~eventpro.schemas.Envelope` with orjson: the only codec on EventPro topics.

``decode`` never raises anything but :class:`~eventpro.schemas.SchemaError`, so an agent can
catch that one type and dead-letter the record. Plain functions, no Faust: the app registers
them as a Faust codec.

Several agents read the same records (``reservations`` and ``orders`` feed payments,
notifications and analytics), so :func:`decode` remembers the envelopes of the last
:data:`RECENT_DECODES` values: each record is parsed and validated once per worker, not once
per agent. Envelopes are frozen, so sharing one is safe.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
from pydantic import ValidationError

from eventpro.schemas.envelope import Envelope, EventData
from eventpro.schemas.errors import SchemaError, SchemaErrorReason
from eventpro.schemas.events import EVENT_MODELS
from eventpro.schemas.upcasting import upcast

__all__ = ("EVENT_TYPES", "RECENT_DECODES", "decode", "encode", "envelope_dict")

logger = logging.getLogger(__name__)

EVENT_TYPES: dict[str, type[EventData]] = {model.EVENT_TYPE: model for model in EVENT_MODELS}
"""event_type -> current payload model."""

_DUMPS_OPTIONS = orjson.OPT_UTC_Z

RECENT_DECODES = 4096
"""Record values whose envelopes :func:`decode` keeps (a few MiB at most): enough for the
records one fetch delivers to every agent that reads them."""

_recent: dict[bytes, Envelope] = {}
_recent_lock = threading.Lock()


def envelope_dict(envelope: Envelope) -> dict[str, Any]:
    """The envelope as plain Python values (what :func:`encode` serialises)."""
    return {
        "event_type": envelope.event_type,
        "schema_version": envelope.schema_version,
        "event_id": envelope.event_id,
        "occurred_at": envelope.occurred_at,
        "source": envelope.source,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "data": envelope.data.model_dump(),
    }


def encode(envelope: Envelope) -> bytes:
    """Serialise an envelope to JSON bytes (UTF-8, ``occurred_at`` in RFC 3339 UTC)."""
    return orjson.dumps(envelope_dict(envelope), option=_DUMPS_OPTIONS)


def _validation_text(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def decode(raw: bytes | bytearray | memoryview | str) -> Envelope:
    """Parse, upcast and validate one record value (the same envelope for a value decoded
    recently).

    :raises SchemaError: invalid JSON, not an envelope object, unknown ``event_type``,
        unsupported ``schema_version``, or a field that fails validation (the message names
        the field). Errors are not remembered: an unreadable value is read again each time.
    """
    if type(raw) is not bytes:
        return _decode(raw)
    envelope = _recent.get(raw)
    if envelope is None:
        envelope = _decode(raw)
        with _recent_lock:
            _recent[raw] = envelope
            if len(_recent) > RECENT_DECODES:
                del _recent[next(iter(_recent))]  # the oldest: dicts keep insertion order
    return envelope


def _decode(raw: bytes | bytearray | memoryview | str) -> Envelope:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(SchemaErrorReason.INVALID_JSON, str(exc)) from None
    if not isinstance(obj, dict):
        raise SchemaError(
            SchemaErrorReason.NOT_AN_ENVELOPE,
            f"expected a JSON object envelope, got {type(obj).__name__}",
        )
    event_type = obj.get("event_type")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise SchemaError(
            SchemaErrorReason.UNKNOWN_EVENT_TYPE,
            f"event_type {event_type!r} is not one of {sorted(EVENT_TYPES)}",
        )
    version = obj.get("schema_version")
    if type(version) is not int or not 1 <= version <= model.SCHEMA_VERSION:
        raise SchemaError(
            SchemaErrorReason.UNSUPPORTED_SCHEMA_VERSION,
            f"{event_type} schema_version {version!r} is not supported "
            f"(this build reads 1..{model.SCHEMA_VERSION})",
        )
    data = obj.get("data")
    if not isinstance(data, dict):
        raise SchemaError(
            SchemaErrorReason.VALIDATION_ERROR, f"data: expected an object for {event_type}"
        )
    try:
        if version != model.SCHEMA_VERSION:
            upcast_data = upcast(event_type, version, model.SCHEMA_VERSION, data, obj)
            if upcast_data is None:
                raise SchemaError(
                    SchemaErrorReason.UNSUPPORTED_SCHEMA_VERSION,
                    f"no upcaster from {event_type} v{version} to v{model.SCHEMA_VERSION}",
                )
            data = upcast_data
        payload = model.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(
            SchemaErrorReason.VALIDATION_ERROR,
            f"{event_type} v{version}: {_validation_text(exc, 'data')}",
        ) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise SchemaError(
            SchemaErrorReason.VALIDATION_ERROR,
            f"{event_type} v{version} could not be upcast: {exc!r}",
        ) from None
    try:
        return Envelope.model_validate(
            {**obj, "schema_version": model.SCHEMA_VERSION, "data": payload}
        )
    except ValidationError as exc:
        raise SchemaError(
            SchemaErrorReason.VALIDATION_ERROR,
            f"{event_type} envelope: {_validation_text(exc, '')}",
        ) from None
