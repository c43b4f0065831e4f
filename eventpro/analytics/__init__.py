"""Live sales analytics: tumbling windows per event, the analytics agent and its views.

Importing this package declares the tables, the agent and the views on
:data:`eventpro.app.app` (and installs the monitoring sensor the stats read).
"""

from __future__ import annotations

from eventpro.analytics.agent import AGENT_NAME, analytics_agent
from eventpro.analytics.config import AnalyticsSettings, get_analytics_settings
from eventpro.analytics.facts import EventSales, FactKind, SaleFact, WindowCounts, fact_from
from eventpro.analytics.processor import AnalyticsProcessor
from eventpro.analytics.tables import processor, totals_table, windowed_tables
from eventpro.analytics.views import parse_window
from eventpro.analytics.windows import Window, accepts, is_expired, window_of, window_start

__all__ = (
    "AGENT_NAME",
    "AnalyticsProcessor",
    "AnalyticsSettings",
    "EventSales",
    "FactKind",
    "SaleFact",
    "Window",
    "WindowCounts",
    "accepts",
    "analytics_agent",
    "fact_from",
    "get_analytics_settings",
    "is_expired",
    "parse_window",
    "processor",
    "totals_table",
    "window_of",
    "window_start",
    "windowed_tables",
)
