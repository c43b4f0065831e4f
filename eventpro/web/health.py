"""Liveness and readiness: ``GET /health`` and ``GET /ready``.

``/health`` answers 200 while the process serves HTTP. ``/ready`` answers 200 only when this
worker has partitions assigned, is not rebalancing, has recovered its tables from their
changelogs and its last broker probe (the DLQ-depth refresh, every few seconds) was answered,
so a load balancer sends traffic only to workers that can answer from state;
otherwise 503 with the reasons.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust import web

from eventpro.app import app
from eventpro.membership import group_lease
from eventpro.monitoring import broker_problem
from eventpro.web.routing import view_is_stale

__all__ = ("blueprint", "readiness")

logger = logging.getLogger(__name__)

blueprint = web.Blueprint("health")


def readiness(faust_app: faust.App) -> tuple[bool, dict[str, Any]]:
    """Whether the worker can answer from its tables, and the facts behind that answer."""
    reasons: list[str] = []
    assigned = 0
    if not faust_app.started:
        reasons.append("worker is starting")
    else:
        try:
            assigned = len(faust_app.consumer.assignment())
        except Exception as exc:  # no consumer yet
            reasons.append(f"consumer not ready: {exc!r}")
        stale = view_is_stale(faust_app)
        if stale is not None:
            reasons.append(stale)
        problem = broker_problem(faust_app)
        if problem is not None:
            reasons.append(f"broker unreachable: {problem}")
        if assigned == 0 and not reasons:
            reasons.append("no partitions assigned yet")
    info = {
        "ready": not reasons,
        "reasons": reasons,
        "assigned_partitions": assigned,
        "rebalancing": bool(faust_app.rebalancing),
        # Seconds since the group coordinator last accepted a heartbeat (eventpro.membership).
        "group_lease_age_s": (
            round(group_lease.unconfirmed_for(), 1) if group_lease.confirmed else None
        ),
        "url": str(faust_app.conf.canonical_url),
    }
    return not reasons, info


@blueprint.route("/health", name="health")
class HealthView(web.View):
    """``GET /health``: the process is alive."""

    async def get(self, request: web.Request) -> web.Response:
        """Always 200 while serving."""
        return self.json({"status": "ok"})


@blueprint.route("/ready", name="ready")
class ReadyView(web.View):
    """``GET /ready``: 200 when partitions are assigned and tables recovered, else 503."""

    async def get(self, request: web.Request) -> web.Response:
        """200 or 503, with the reasons."""
        ready, info = readiness(self.app)
        return self.json(info, status=200 if ready else 503)


blueprint.register(app, url_prefix="")
