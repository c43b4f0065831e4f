"""EventPro's Faust tables and the typed facade the agents and views use.

Importing this package declares the tables on :data:`eventpro.app.app` (autodiscovery does).
"""

from __future__ import annotations

from eventpro.tables.expiry import HoldExpiryIndex
from eventpro.tables.state import TicketingState
from eventpro.tables.ticketing import (
    holds_table,
    inventory_table,
    request_status_table,
    state,
    user_tickets_table,
)

__all__ = (
    "HoldExpiryIndex",
    "TicketingState",
    "holds_table",
    "inventory_table",
    "request_status_table",
    "state",
    "user_tickets_table",
)
