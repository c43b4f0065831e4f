"""Reads of partitioned state, routed to the partition's owner, never from a stale view.

Faust's ``app.table_route`` forwards a request to the worker its last assignment names as the
owner of the key's partition, or answers from the local tables when that is this worker. A
worker that left the group (after a broker restart its member id is unknown and it rejoins)
keeps that old assignment until it is in the group again, so for a few seconds it would answer
from tables nobody updates any more. :func:`owner_route` answers ``503`` with ``Retry-After``
instead while this worker is rebalancing or recovering its tables, or while its group membership
is in doubt (:mod:`eventpro.membership`: no heartbeat accepted for a while, so the group may
have moved its partitions without it knowing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import faust
from faust import web
from faust.types import CollectionT

from eventpro.membership import group_lease

__all__ = ("RETRY_AFTER_SECONDS", "owner_route", "view_is_stale")

RETRY_AFTER_SECONDS = 1

Handler = Callable[..., Awaitable[web.Response]]


def view_is_stale(faust_app: faust.App) -> str | None:
    """Why this worker cannot tell who owns a partition right now, or ``None`` if it can."""
    if faust_app.rebalancing:
        return "rebalancing"
    if faust_app.in_recovery or not faust_app.tables.recovery.completed.is_set():
        return "recovering tables from changelogs"
    if group_lease.lapsed():
        # Its tables may be frozen: the group may have given its partitions to another worker.
        return f"out of touch with the group coordinator for {group_lease.unconfirmed_for():.0f} s"
    return None


def owner_route(
    faust_app: faust.App, table: CollectionT, *, match_info: str
) -> Callable[[Handler], Handler]:
    """``faust_app.table_route(table, match_info=...)``, answering 503 while the view is stale."""
    route = faust_app.table_route(table=table, match_info=match_info)

    def decorator(fun: Handler) -> Handler:
        routed = route(fun)

        @wraps(fun)
        async def get(view: web.View, request: web.Request, *args: Any, **kwargs: Any) -> Any:
            reason = view_is_stale(faust_app)
            if reason is not None:
                return view.json(
                    {
                        "error": f"this worker is {reason}; it cannot tell who owns "
                        f"{match_info} {request.match_info[match_info]!r} yet, retry shortly",
                        "retry_after_s": RETRY_AFTER_SECONDS,
                    },
                    status=503,
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            return await routed(view, request, *args, **kwargs)

        return get

    return decorator
