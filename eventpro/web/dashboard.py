"""``GET /dashboard``: the live sales page, served by every worker with its own assets.

The page is static HTML + a small script (hand-drawn SVG chart, no CDN) that polls
``/api/v1/stats``, ``/api/v1/events/{id}`` and ``/api/v1/events/{id}/sales`` once a second.
"""

from __future__ import annotations

import logging
from pathlib import Path

from faust import web

from eventpro.app import app

__all__ = ("ASSETS", "STATIC_DIR")

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
ASSETS: dict[str, str] = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}
"""Files under ``/dashboard/assets/`` and their content types (nothing else is served)."""


@app.page("/dashboard", name="dashboard")
class DashboardView(web.View):
    """The live page."""

    async def get(self, request: web.Request) -> web.Response:
        """200 with the HTML."""
        body = (STATIC_DIR / "dashboard.html").read_bytes()
        return self.bytes(body, content_type="text/html", headers={"Cache-Control": "no-cache"})


@app.page("/dashboard/assets/{name}", name="dashboard-assets")
class DashboardAssetView(web.View):
    """The page's script and stylesheet."""

    async def get(self, request: web.Request, name: str) -> web.Response:
        """200 with the asset, 404 for any other name."""
        content_type = ASSETS.get(name)
        if content_type is None:
            return self.error(404, f"no dashboard asset {name!r}")
        body = (STATIC_DIR / name).read_bytes()
        return self.bytes(body, content_type=content_type, headers={"Cache-Control": "no-cache"})
