"""The Faust tables of the ticketing core, declared on :data:`eventpro.app.app`.

All four are written only by the inventory agent while it handles a record of
``ticket-requests`` or ``inventory-ticks`` (both keyed and partitioned by event_id), so every
change lands on the changelog partition of the event's source partition: the tables are
co-partitioned with the stream and the agent is their single writer.

They are :class:`~eventpro.tables.changelog.GatheringTable` s: the inventory agent's batched
path produces their changelog records itself, one Kafka batch per partition.

Keys are ``str`` serialised raw (UTF-8), the same bytes as the ``event_id`` key of the
ticket-requests topic, so ``app.table_route`` on an ``event_id`` finds the partition owner.

Keeping state bounded (Faust expires only windowed keys through the changelog):

- ``inventory``: one small value per event, compacted changelog, kept for the event's life.
- ``holds``: the agent deletes a hold (a changelog tombstone) as soon as it is confirmed,
  released or expired, so it holds at most the seats currently on hold.
- ``user-tickets``: one counter per (event, buyer with seats), deleted when it drops to 0;
  kept (compacted) for the event's life because the per-user limit must hold that long.
- ``request-status`` (the dedup record): changelog ``cleanup.policy=compact,delete`` with
  ``retention.ms = dedup_ttl_seconds`` bounds it in Kafka, and the RocksDB store is opened
  with the same TTL (``options={"ttl": ...}``) so compaction drops old keys locally too.
  A request resubmitted after the TTL is treated as new; that window is the dedup contract.
  With ``store=memory://`` (tests) the local copy is not expired.
"""

from __future__ import annotations

import logging

from eventpro.app import app
from eventpro.settings import get_settings
from eventpro.tables.changelog import GatheringTable, gathering_table
from eventpro.tables.state import TicketingState
from eventpro.tables.stores import store_options

__all__ = (
    "HOLDS_TABLE",
    "INVENTORY_TABLE",
    "REQUEST_STATUS_TABLE",
    "USER_TICKETS_TABLE",
    "holds_table",
    "inventory_table",
    "request_status_table",
    "state",
    "user_tickets_table",
)

logger = logging.getLogger(__name__)

INVENTORY_TABLE = "inventory"
HOLDS_TABLE = "holds"
USER_TICKETS_TABLE = "user-tickets"
REQUEST_STATUS_TABLE = "request-status"

_settings = get_settings()


def _table(
    name: str,
    *,
    value_type: type,
    help: str,
    retention_seconds: float | None = None,
) -> GatheringTable:
    value_serializer = "raw" if value_type is bytes else "json"
    changelog = app.topic(
        f"{app.conf.id}-{name}-changelog",
        key_type=str,
        value_type=value_type,
        key_serializer="raw",
        value_serializer=value_serializer,
        partitions=_settings.partitions,
        compacting=True,
        deleting=True if retention_seconds is not None else None,
        retention=retention_seconds,
        internal=True,
        acks=False,
        maxsize=131_072,
        allow_empty=True,
    )
    table = gathering_table(
        app,
        name,
        key_type=str,
        value_type=value_type,
        partitions=_settings.partitions,
        changelog_topic=changelog,
        options=store_options(retention_seconds),
        help=help,
    )
    # Faust serialises str keys as JSON by default; raw keys hash to the same partition as
    # the topic's event_id key, which table_route relies on.
    table.key_serializer = "raw"
    return table


inventory_table = _table(
    INVENTORY_TABLE, value_type=bytes, help="event_id -> EventInventory (JSON)"
)
holds_table = _table(HOLDS_TABLE, value_type=bytes, help="reservation_id -> Hold (JSON)")
user_tickets_table = _table(
    USER_TICKETS_TABLE, value_type=int, help="event_id/user_id -> seats held or bought"
)
request_status_table = _table(
    REQUEST_STATUS_TABLE,
    value_type=bytes,
    help="event_id/request_id -> RequestStatus (JSON); the dedup record",
    retention_seconds=_settings.dedup_ttl_seconds,
)

state = TicketingState(
    inventory_table=inventory_table,
    holds_table=holds_table,
    user_tickets_table=user_tickets_table,
    statuses_table=request_status_table,
)
"""Typed access to the four tables above."""
