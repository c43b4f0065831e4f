"""Wire format of every EventPro event: a versioned JSON envelope, pydantic v2 payloads, orjson.

Producing ticket requests from any language
===========================================

Send one Kafka record per request to topic ``ticket-requests`` (with the deployment's topic
prefix, if any), ``acks=all``:

- **key**: the ``event_id`` as UTF-8 bytes. Required: every record about one event must land
  in the partition that owns that event's seats.
- **partitioner**: Kafka's default murmur2 partitioner (``toPositive(murmur2(key)) %
  partitions``), as the Java client and aiokafka use. librdkafka-based clients (confluent-kafka
  Python/Go/.NET, kcat, node-rdkafka) default to a *different* hash: set
  ``partitioner=murmur2_random`` there. :func:`eventpro.topics.partition_for_key` is the
  reference implementation.
- **value**: UTF-8 JSON, the envelope::

    {
      "event_type": "TicketRequested",
      "schema_version": 2,
      "event_id": "6f1c9e1e-0a6b-4c59-9d84-7b0c0f6a2f10",   # unique per message
      "occurred_at": "2025-05-01T12:00:00.123Z",          # RFC 3339
      "source": "partner-app",                             # who produced it
      "correlation_id": "6f1c9e1e-0a6b-4c59-9d84-7b0c0f6a2f10",  # optional, defaults to event_id
      "causation_id": null,                                # optional
      "data": {
        "request_id": "r-123",   # your idempotency key: resend with the same id, get one outcome
        "event_id": "concert-2025",
        "user_id": "u-42",
        "quantity": 2
      }
    }

Ids (``request_id``, ``event_id``, ``user_id``) are 1-128 characters without ``/`` or
whitespace. Unknown fields are ignored; a record that cannot be read goes to the ``dlq`` topic
with the reason. ``TicketRequested`` version 1 (``{"event", "user", "qty", "request_id"?}``) is
still accepted and upcast on read. Follow the request with
``GET /api/v1/events/{event_id}/requests/{request_id}``.

Outcomes are published as ``SeatsReserved`` / ``RequestRejected`` / ``SeatsReleased`` on
``reservations`` and ``OrderConfirmed`` on ``orders``, all keyed by ``event_id``. JSON Schemas
of every event: ``eventpro schemas export DIR`` (:func:`export_json_schemas`).

Python API
==========

- :func:`encode` ``(Envelope) -> bytes``; :func:`decode` ``(bytes) -> Envelope``, raising only
  :class:`SchemaError` (``.reason`` is a :class:`SchemaErrorReason`).
- :meth:`Envelope.new` ``(data, *, source, correlation_id=None, ...)`` starts a message;
  :meth:`Envelope.caused` ``(data)`` continues a saga (same correlation, causation = parent).
- ``envelope.data`` is one of the payload models in :mod:`eventpro.schemas.events`; use
  ``match envelope.data: case TicketRequested(): ...`` or :meth:`Envelope.data_as`.
"""

from __future__ import annotations

from eventpro.schemas.codec import EVENT_TYPES, decode, encode, envelope_dict
from eventpro.schemas.envelope import Envelope, EventData, Id, new_id
from eventpro.schemas.errors import SchemaError, SchemaErrorReason
from eventpro.schemas.events import (
    EVENT_MODELS,
    DeadLetter,
    EventCreated,
    HoldExpiryTick,
    NotificationSent,
    OrderConfirmed,
    PaymentCaptured,
    PaymentDeclined,
    RefundIssued,
    RefundRequested,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
    TicketRequested,
    TicketRequestedV1,
)
from eventpro.schemas.jsonschema import envelope_schema, export_json_schemas
from eventpro.schemas.upcasting import upcast

__all__ = (
    "EVENT_MODELS",
    "EVENT_TYPES",
    "DeadLetter",
    "Envelope",
    "EventCreated",
    "EventData",
    "HoldExpiryTick",
    "Id",
    "NotificationSent",
    "OrderConfirmed",
    "PaymentCaptured",
    "PaymentDeclined",
    "RefundIssued",
    "RefundRequested",
    "RequestRejected",
    "SchemaError",
    "SchemaErrorReason",
    "SeatsReleased",
    "SeatsReserved",
    "TicketRequested",
    "TicketRequestedV1",
    "decode",
    "encode",
    "envelope_dict",
    "envelope_schema",
    "export_json_schemas",
    "new_id",
    "upcast",
)
