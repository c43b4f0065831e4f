"""EventPro's HTTP views (Faust Blueprint + View); importing registers them on the app."""

from __future__ import annotations

from eventpro.web.api import API_PREFIX, lookup_event, status_path
from eventpro.web.health import readiness

__all__ = ("API_PREFIX", "lookup_event", "readiness", "status_path")
