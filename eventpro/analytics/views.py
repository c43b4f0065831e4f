"""Analytics views: ``GET /api/v1/events/{event_id}/sales`` and ``GET /api/v1/stats``."""

from __future__ import annotations

import logging

from faust import web

from eventpro.analytics.config import get_analytics_settings
from eventpro.analytics.stats import gather_stats, iso, local_stats
from eventpro.analytics.tables import processor, totals_table
from eventpro.app import app
from eventpro.web.routing import owner_route

__all__ = ("API_PREFIX", "WindowParamError", "blueprint", "parse_window")

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

blueprint = web.Blueprint("analytics")


class WindowParamError(ValueError):
    """``?window=`` is not one of the configured sizes."""


def parse_window(raw: str | None, sizes: tuple[int, ...]) -> int:
    """The window size asked for; 60 (or the largest size) when not given.

    :raises WindowParamError: not an integer, or not a configured size.
    """
    if raw is None or raw == "":
        return 60 if 60 in sizes else max(sizes)
    choices = ", ".join(str(size) for size in sizes)
    try:
        size = int(raw)
    except ValueError:
        raise WindowParamError(
            f"window must be a number of seconds, one of {choices}; got {raw!r}"
        ) from None
    if size not in sizes:
        raise WindowParamError(f"window must be one of {choices} (seconds); got {size}")
    return size


def _window_error(view: web.View, exc: WindowParamError) -> web.Response:
    sizes = list(get_analytics_settings().windows)
    return view.json({"error": str(exc), "windows": sizes}, status=400)


@blueprint.route("/events/{event_id}/sales", name="event-sales")
class EventSalesView(web.View):
    """Tumbling windows of one event, from the worker that owns it."""

    @owner_route(app, totals_table, match_info="event_id")
    async def get(self, request: web.Request, event_id: str) -> web.Response:
        """200 with ``[{window_start, window_end, requests, sold, ...}]``, oldest first."""
        sizes = get_analytics_settings().windows
        try:
            size = parse_window(request.query.get("window"), sizes)
        except WindowParamError as exc:
            return _window_error(self, exc)
        rows = [
            {"window_start": iso(window.start), "window_end": iso(window.end), **counts.to_dict()}
            for window, counts in processor.windows_of(event_id, size)
        ]
        return self.json(rows)


@blueprint.route("/stats", name="stats")
class StatsView(web.View):
    """Live totals and the top events of the current window, across all workers."""

    async def get(self, request: web.Request) -> web.Response:
        """200 with the merged stats (``partial`` if a worker did not answer)."""
        try:
            size = parse_window(request.query.get("window"), get_analytics_settings().windows)
        except WindowParamError as exc:
            return _window_error(self, exc)
        return self.json(await gather_stats(self.app, size))


@blueprint.route("/stats/local", name="stats-local")
class LocalStatsView(web.View):
    """This worker's part of ``/stats`` (asked by the other workers)."""

    async def get(self, request: web.Request) -> web.Response:
        """200 with the events this worker owns and its operational numbers."""
        try:
            size = parse_window(request.query.get("window"), get_analytics_settings().windows)
        except WindowParamError as exc:
            return _window_error(self, exc)
        return self.json(local_stats(self.app, size))


blueprint.register(app, url_prefix=API_PREFIX)
