"""EventPro's Faust agents; importing this package registers them on :data:`eventpro.app.app`."""

from __future__ import annotations

from eventpro.agents.inventory import inventory_agent, send_expiry_ticks
from eventpro.agents.processing import InventoryProcessor, Outgoing, outcome_event_id

__all__ = (
    "InventoryProcessor",
    "Outgoing",
    "inventory_agent",
    "outcome_event_id",
    "send_expiry_ticks",
)
