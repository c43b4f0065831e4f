"""Live totals and top events, per worker and gathered across the cluster.

Each worker summarises the events of the partitions it owns (``local_stats``); ``GET
/api/v1/stats`` asks every worker for its part (``/api/v1/stats/local``) and merges them, so
any worker answers for the whole cluster. A worker that does not answer is listed under
``unreachable`` and the answer is marked ``partial``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.types import TP
from yarl import URL

from eventpro.analytics.config import get_analytics_settings
from eventpro.analytics.facts import EventSales, WindowCounts
from eventpro.analytics.tables import totals_table, window_stores
from eventpro.analytics.windows import window_of
from eventpro.monitoring import local_summary, quantile
from eventpro.settings import get_settings
from eventpro.topics import RESERVATIONS, partition_for_key

__all__ = ("LOCAL_PATH", "TOP_EVENTS", "gather_stats", "iso", "local_stats", "merge_stats")

logger = logging.getLogger(__name__)

LOCAL_PATH = "/api/v1/stats/local"
TOP_EVENTS = 10
PEER_TIMEOUT_SECONDS = 2.0

_settings = get_settings()


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _owned(faust_app: faust.App, event_id: str) -> bool:
    partition = partition_for_key(event_id.encode("utf-8"), _settings.partitions)
    try:
        actives = faust_app.assignor.assigned_actives()
    except Exception:
        return False
    return TP(_settings.topic_name(RESERVATIONS), partition) in actives


def local_stats(faust_app: faust.App, size: int, now: float | None = None) -> dict[str, Any]:
    """This worker's events (owned partitions only): totals and the current ``size`` window."""
    now = time.time() if now is None else now
    window = window_of(now, size)
    store = window_stores[size]
    events = []
    for event_id, raw in list(totals_table.items()):
        if not _owned(faust_app, event_id):
            continue
        sales = EventSales.from_dict(orjson.loads(raw))
        current = store.get(event_id, window) or WindowCounts()
        events.append(
            {
                "event_id": event_id,
                "totals": sales.totals.to_dict(),
                "current": current.to_dict(),
                "watermark": None if sales.watermark is None else iso(sales.watermark),
            }
        )
    return {
        "window": size,
        "window_start": iso(window.start),
        "window_end": iso(window.end),
        "events": events,
        "operations": local_summary(faust_app),
    }


def _rank(event: Mapping[str, Any]) -> tuple[int, int, str]:
    current = event["current"]
    return (-int(current["sold"]), -int(current["requests"]), str(event["event_id"]))


def merge_stats(parts: Iterable[Mapping[str, Any]], size: int, now: float) -> dict[str, Any]:
    """One cluster answer from the workers' ``local_stats``."""
    totals = WindowCounts()
    current = WindowCounts()
    events: dict[str, Mapping[str, Any]] = {}
    latencies: list[float] = []
    lag_total = 0
    dlq_depth: int | None = None
    workers = []
    for part in parts:
        for event in part.get("events", []):
            events.setdefault(str(event["event_id"]), event)
        ops = part.get("operations") or {}
        lag_total += int(ops.get("lag_total") or 0)
        if ops.get("dlq_depth") is not None:
            dlq_depth = max(dlq_depth or 0, int(ops["dlq_depth"]))
        latencies.extend(float(v) for v in ops.get("decision_latencies_ms") or [])
        workers.append(
            {
                "worker": ops.get("worker"),
                "lag_total": ops.get("lag_total"),
                "events": len(part.get("events", [])),
            }
        )
    for event in events.values():
        totals = totals.merge(WindowCounts.from_dict(event["totals"]))
        current = current.merge(WindowCounts.from_dict(event["current"]))
    window = window_of(now, size)
    ranked = sorted(events.values(), key=_rank)
    return {
        "generated_at": iso(now),
        "window": size,
        "window_start": iso(window.start),
        "window_end": iso(window.end),
        "totals": totals.to_dict(),
        "current": current.to_dict(),
        "event_count": len(events),
        "top_events": ranked[:TOP_EVENTS],
        "events": sorted(events),
        "decision_latency_ms": {
            "p50": quantile(latencies, 0.5),
            "p99": quantile(latencies, 0.99),
            "samples": len(latencies),
        },
        "consumer_lag": lag_total,
        "dlq_depth": dlq_depth,
        "workers": workers,
    }


def _peers(faust_app: faust.App) -> list[URL]:
    own = URL(str(faust_app.conf.canonical_url))
    urls = {own}
    try:
        urls.update(URL(str(url)) for url in faust_app.router.tables_metadata())
    except Exception as exc:  # no assignment yet
        logger.debug("no cluster metadata yet: %r", exc)
    return sorted(urls, key=str)


async def _fetch(faust_app: faust.App, url: URL, size: int) -> Mapping[str, Any]:
    target = url.with_path(LOCAL_PATH).with_query({"window": str(size)})
    async with asyncio.timeout(PEER_TIMEOUT_SECONDS):
        async with faust_app.http_client.get(target) as response:
            if response.status != 200:
                raise RuntimeError(f"{target} answered {response.status}")
            body: Mapping[str, Any] = await response.json()
            return body


async def gather_stats(faust_app: faust.App, size: int) -> dict[str, Any]:
    """Cluster-wide stats: this worker's part plus every peer's, merged."""
    now = time.time()
    own = URL(str(faust_app.conf.canonical_url))
    peers = [url for url in _peers(faust_app) if (url.host, url.port) != (own.host, own.port)]
    results = await asyncio.gather(
        *(_fetch(faust_app, url, size) for url in peers), return_exceptions=True
    )
    parts: list[Mapping[str, Any]] = [local_stats(faust_app, size, now)]
    unreachable = []
    for url, result in zip(peers, results, strict=True):
        if isinstance(result, BaseException):
            logger.warning("stats: worker %s did not answer: %r", url, result)
            unreachable.append(str(url))
        else:
            parts.append(result)
    merged = merge_stats(parts, size, now)
    merged["partial"] = bool(unreachable)
    merged["unreachable"] = unreachable
    merged["windows"] = list(get_analytics_settings().windows)
    return merged
