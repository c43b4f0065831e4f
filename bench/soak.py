"""Phase 5 of the pipeline benchmark: a worker's memory and table keys over a long run.

The goal is a worker whose memory stays bounded and whose state stops growing once expiry
catches up. One worker runs every agent while the load generator offers a constant rate for
the scale's soak duration. The retention settings are short (:data:`SOAK_ENV`) so that
expiry happens inside the run rather than after a day: request ids and sent notifications
are remembered :data:`DEDUP_TTL_S` seconds, and analytics keeps three 10 s windows. RocksDB
memtables are 1 MiB so that stores flush during the run; every store shares one read cache of
:data:`ROCKSDB_MEMORY_MB`, which their memtables are charged to as well: the ceiling of
RocksDB's memory, which the report gives beside the resident memory. Every :data:`SAMPLES` th
of the run the worker's resident memory (``VmRSS``) and its keys per table (``GET /metrics``,
``eventpro_table_keys``) are recorded.

Tables fall in two groups: *expiring* ones (:data:`EXPIRING_TABLES`: dedup records and
analytics windows), which should level off, and tables kept for an event's life (seats,
claims, per-user counts, totals), which grow with the seats sold and stop once the events
sell out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.checks import invariants
from eventpro.loadgen import LoadSpec, run_loadgen
from eventpro.processes import WorkerProcess

__all__ = (
    "DEDUP_TTL_S",
    "EXPIRING_TABLES",
    "SAMPLES",
    "SOAK_ENV",
    "SoakSample",
    "render_soak",
    "resident_mb",
    "run_soak",
    "table_keys",
)

DEDUP_TTL_S = 30
"""``EVENTPRO_DEDUP_TTL_SECONDS`` of the soak worker."""
ROCKSDB_MEMORY_MB = 64
"""``EVENTPRO_ROCKSDB_MEMORY_MB`` of the soak worker: all its RocksDB stores' memory."""
SOAK_ENV = {
    "EVENTPRO_DEDUP_TTL_SECONDS": str(DEDUP_TTL_S),
    "EVENTPRO_ANALYTICS_WINDOWS": "10",
    "EVENTPRO_ANALYTICS_HISTORY": "3",
    "EVENTPRO_ROCKSDB_WRITE_BUFFER_MB": "1",
    "EVENTPRO_ROCKSDB_MEMORY_MB": str(ROCKSDB_MEMORY_MB),
}
"""Retention short enough to expire within the run (see the module docstring)."""
EXPIRING_TABLES = ("request-status", "notifications-sent", "sales-seen", "sales-10s")
"""Tables whose keys expire (dedup TTL, analytics windows); the others live as long as the event."""
SAMPLES = 20
"""Samples over the run (one more at its start)."""
SOAK_EVENTS = 20
SELL_OUT_SHARE = 3
"""The events' seats add up to about a third of the requests: they sell out early in the run,
and the rest of it is rejections (which still write statuses and dedup records)."""


@dataclass(frozen=True, slots=True)
class SoakSample:
    """The worker at one moment of the run."""

    seconds: float
    rss_mb: float
    table_keys: dict[str, int]

    @property
    def expiring_keys(self) -> int:
        return sum(self.table_keys.get(name, 0) for name in EXPIRING_TABLES)

    @property
    def lasting_keys(self) -> int:
        return sum(n for name, n in self.table_keys.items() if name not in EXPIRING_TABLES)


def resident_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a process now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise ValueError(f"no VmRSS for process {pid}")


def table_keys(metrics: str) -> dict[str, int]:
    """Keys per table from a worker's Prometheus text (``eventpro_table_keys{table=...}``)."""
    keys: dict[str, int] = {}
    for line in metrics.splitlines():
        if line.startswith("eventpro_table_keys{"):
            labels, _, value = line.rpartition(" ")
            name = labels.split('table="', 1)[1].split('"', 1)[0]
            keys[name] = int(float(value))
    return keys


async def _sample(http: aiohttp.ClientSession, worker: WorkerProcess, start: float) -> SoakSample:
    async with http.get(f"{worker.url}/metrics") as response:
        response.raise_for_status()
        keys = table_keys(await response.text())
    return SoakSample(
        seconds=round(time.monotonic() - start, 1),
        rss_mb=round(resident_mb(worker.pid or 0), 1),
        table_keys=keys,
    )


async def run_soak(
    bootstrap: str,
    worker: WorkerProcess,
    prefix: str,
    *,
    seconds: float,
    rate: int,
    partitions: int,
) -> dict[str, Any]:
    """Offer ``rate`` requests/s for ``seconds`` to the started ``worker`` (topic ``prefix``,
    ``partitions`` per topic, all its own) and sample it :data:`SAMPLES` times; the worker must
    run with :data:`SOAK_ENV`."""
    users = max(1, int(rate * seconds))
    spec = LoadSpec(
        users=users,
        events=SOAK_EVENTS,
        capacity=max(1, users // (SOAK_EVENTS * SELL_OUT_SHARE)),
        duplicate_rate=0.02,
        profile="rate",
        rate=float(rate),
        timeout=max(60.0, seconds),
        seed=11,
        run_id=f"soak-{uuid.uuid4().hex[:6]}",
    )
    samples: list[SoakSample] = []
    interval = seconds / SAMPLES
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        start = time.monotonic()
        load = asyncio.create_task(
            run_loadgen(spec, broker_url=bootstrap, topic_prefix=prefix, progress=False)
        )
        try:
            while True:
                samples.append(await _sample(http, worker, start))
                if load.done():
                    break
                due = start + len(samples) * interval
                await asyncio.wait({load}, timeout=max(0.0, due - time.monotonic()))
        except BaseException:
            load.cancel()
            raise
        report = await load
    data = report.to_dict()
    latency = data["latency_ms"]["decision"]
    stores = len(samples[-1].table_keys) * partitions
    return {
        "seconds": seconds,
        "offered_per_s": rate,
        "requests": users,
        "events": SOAK_EVENTS,
        "capacity": spec.capacity,
        "dedup_ttl_s": DEDUP_TTL_S,
        "stores": stores,
        "rocksdb_ceiling_mb": float(ROCKSDB_MEMORY_MB),
        "env": SOAK_ENV,
        "achieved_send_per_s": data["sent"]["rate_per_s"],
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "timed_out": report.timed_out,
        "samples": [
            {**asdict(s), "expiring_keys": s.expiring_keys, "lasting_keys": s.lasting_keys}
            for s in samples
        ],
        "invariants": invariants(report.outcomes),
    }


def _growth(samples: list[dict[str, Any]], field: str) -> tuple[float, float]:
    """``field`` at the middle sample and at the last one."""
    return samples[len(samples) // 2][field], samples[-1][field]


def render_soak(soak: dict[str, Any] | None) -> list[str]:
    """The report's phase-5 section (Markdown lines)."""
    lines = ["", "## 5. Memory and table keys over a long run", ""]
    if soak is None:
        return [*lines, "not measured in this run (--skip soak)"]
    env = ", ".join(f"`{k}={v}`" for k, v in soak["env"].items())
    samples = soak["samples"]
    (rss_mid, rss_end), (exp_mid, exp_end) = (
        _growth(samples, "rss_mb"),
        _growth(samples, "expiring_keys"),
    )
    peak_expiring = max(s["expiring_keys"] for s in samples)
    lines += [
        f"One worker running every agent, {soak['offered_per_s']:,} requests/s offered for "
        f"{soak['seconds']:.0f} s ({soak['requests']:,} requests across {soak['events']} events "
        f"of {soak['capacity']:,} seats, which sell out early), with retention short enough to "
        f"expire within the run: {env}. RSS is the worker's resident memory (`VmRSS`) at each "
        "sample; keys are its `eventpro_table_keys`. *Expiring* tables: "
        + ", ".join(f"`{name}`" for name in EXPIRING_TABLES)
        + "; the others are kept for an event's life.",
        "",
        f"Second half of the run: RSS {rss_mid:,.1f} -> {rss_end:,.1f} MiB "
        f"({rss_end - rss_mid:+,.1f}; the {soak['stores']} RocksDB stores share one read cache "
        f"that holds their memtables too, at most {soak['rocksdb_ceiling_mb']:,.0f} MiB); "
        f"expiring keys {exp_mid:,} -> {exp_end:,} (peak {peak_expiring:,}). "
        f"Decision p50 {_ms(soak.get('p50_ms'))}, p99 {_ms(soak['p99_ms'])}, "
        f"sent {soak['achieved_send_per_s']:,.0f}/s; invariants "
        + ("ok" if soak["invariants"]["ok"] else "VIOLATED")
        + (" (timed out)" if soak["timed_out"] else "")
        + ".",
        "",
        "| s | RSS MiB | expiring keys | lasting keys | "
        + " | ".join(f"`{name}`" for name in EXPIRING_TABLES)
        + " |",
        "|---:|---:|---:|---:|" + "---:|" * len(EXPIRING_TABLES),
    ]
    for s in samples:
        per_table = " | ".join(f"{s['table_keys'].get(name, 0):,}" for name in EXPIRING_TABLES)
        lines.append(
            f"| {s['seconds']:.1f} | {s['rss_mb']:,.1f} | {s['expiring_keys']:,} | "
            f"{s['lasting_keys']:,} | {per_table} |"
        )
    return lines


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"
