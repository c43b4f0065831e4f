"""EventPro ticketing pipeline benchmark: reservation stage, full saga, latency, naive baseline.

    python -m bench.pipeline [--scale tiny|small|full] [--out bench/results] [--profile-worker]
                             [--batch-size N]
                             [--skip floor,saga,latency,per-record,scaled,soak]

One run starts its own broker (``BrokerProcess``) and workers (``WorkerProcess``, log level
WARNING) on a temporary directory and measures, on the same machine:

0. the Faust floor (:mod:`bench.floor`): a Faust agent that only counts the scale's number of
   raw records, on Faust's own Kafka transport and on EventPro's: what Faust's path from the
   broker to an agent costs per record, before any decision;
1. reservation stage: pre-produce the scale's requests (full: 200,000 across 200 events,
   2 % resubmissions), start one worker running the inventory agent alone
   (``EVENTPRO_AGENTS=inventory``, as the baseline decides and nothing else), time from first
   to last decision (``occurred_at`` of the outcomes), the worker's CPU seconds and peak RSS
   (``/proc``); measured twice on their own copies of the requests: per record
   (``EVENTPRO_INVENTORY_BATCH_SIZE=1``, "before") and batched (the worker's default or
   ``--batch-size``, "after");
2. full saga: a worker running every agent on another copy of the requests, until every
   reservation has its ``OrderConfirmed`` (simulated gateway at a fixed 5 ms), or "not
   available" when ``orders`` gets none; its decisions are reported too (the stage with the
   saga sharing the CPU);
2b. the full saga again on two workers of one group (one per core, no standby replicas),
   its requests produced once both hold their partitions;
3. decision latency p50/p95/p99 at fixed offered rates (full/small: 1k, 5k, 10k requests/s),
   produced by the load generator while phase 2's worker runs; each rate starts once the
   worker's consumer group has no lag left from the phases before it (the wait is reported),
   and the worker's and the broker's CPU per request are measured until its own requests
   are drained (saga included); before phase 3, phase 2's worker, once idle, is scraped
   like Prometheus does (``GET /metrics``, timed with the table keys it reports);
4. the naive per-record Faust implementation of stage 1 (:mod:`bench.baseline_naive`) on the
   same requests, and the ratio EventPro/baseline;
5. memory and table keys over a long run (:mod:`bench.soak`): a worker running every agent,
   with retention short enough to expire within the run, at a constant offered rate for the
   scale's soak duration, sampled 20 times.

Every phase checks the invariants (no oversell, one outcome per request). Writes
``pipeline-<scale>.md`` and ``pipeline-<scale>.json`` (``--profile-worker`` adds py-spy
profiles of the workers of phases 1 and 2, if py-spy is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from bench.checks import invariants
from bench.floor import TOPIC as FLOOR_TOPIC
from bench.floor import render_floor, run_floor
from bench.soak import SOAK_ENV, render_soak, run_soak
from eventpro.broker.process import BrokerProcess
from eventpro.loadgen import (
    LoadPlan,
    LoadSpec,
    OutcomeReader,
    OutcomeTracker,
    build_plan,
    create_events_kafka,
    run_loadgen,
    send_kafka,
)
from eventpro.processes import ManagedProcess, WorkerProcess
from eventpro.topics import NOTIFICATIONS, ORDERS, PAYMENTS, RESERVATIONS, TICKET_REQUESTS

__all__ = ("SCALES", "Scale", "main", "run_benchmark")

logger = logging.getLogger(__name__)

PARTITIONS = 4
GATEWAY_LATENCY_MS = 5.0
EVENTPRO_PREFIX = "bench-"
PER_RECORD_PREFIX = "before-"
SAGA_PREFIX = "saga-"
STAGE_AGENTS = "inventory"
"""``EVENTPRO_AGENTS`` of the phase-1 workers: the reservation stage alone, like the baseline."""
SAGA_TOPICS = (PAYMENTS, ORDERS, NOTIFICATIONS)
"""What the saga's agents write; empty after a phase-1 run proves only the stage ran."""
PROFILES = {"stage": "phase 1, the reservation stage", "saga": "phase 2, the full saga"}
"""py-spy profiles ``--profile-worker`` takes: ``<name>-profile.txt``, what they cover."""
DEFAULT_BATCH_SIZE = 1000
"""``EVENTPRO_INVENTORY_BATCH_SIZE`` of the batched ("after") worker unless --batch-size says."""
NAIVE_PREFIX = "naive-"
SOAK_PREFIX = "soak-"
PHASES = frozenset({"floor", "saga", "latency", "per-record", "scaled", "soak"})
"""Phases ``--skip`` may leave out."""
SCALED_PREFIX = "scaled-"
SCALED_WORKERS = 2
"""Workers of the scaled-out saga (phase 2b): one per core of the benchmark machine."""
SCALED_STANDBY_REPLICAS = 0
"""``EVENTPRO_TABLE_STANDBY_REPLICAS`` of phase 2b. With a standby (the default, 1) each worker
also replays the other's changelogs; on two cores that ate most of what the second worker adds
(experiment: saga 625 req/s with a standby, 941 without, one worker 453)."""
METRICS_SCRAPES = 10
"""Timed ``GET /metrics`` calls on phase 2's worker."""
SAGA_START_GRACE_S = 20.0
"""Without any OrderConfirmed this long after the last decision, the saga is "not available"."""


@dataclass(frozen=True, slots=True)
class Scale:
    requests: int
    events: int
    capacity: int
    duplicate_rate: float
    latency_rates: tuple[int, ...]
    latency_seconds: float
    latency_events: int
    timeout: float
    latency_timeout: float
    soak_seconds: float
    soak_rate: int


SCALES: dict[str, Scale] = {
    "tiny": Scale(600, 6, 100, 0.02, (200,), 1.0, 2, 120.0, 60.0, 10.0, 100),
    "small": Scale(
        20_000, 200, 100, 0.02, (1_000, 5_000, 10_000), 3.0, 20, 300.0, 90.0, 300.0, 250
    ),
    "full": Scale(
        200_000, 200, 1_000, 0.02, (1_000, 5_000, 10_000), 10.0, 50, 1_200.0, 300.0, 900.0, 250
    ),
}


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the benchmark runs from."""


def source_commit(root: Path = REPO_ROOT) -> str:
    """The commit of the checkout at ``root``, ``-dirty`` if tracked files differ from it.

    Reports already in ``bench/results`` do not count: a run writing there would otherwise
    call the next run's code dirty.
    """

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        commit = git("describe", "--always")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if changed else commit


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "eventpro_commit": source_commit(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            dist: _version(dist)
            for dist in ("faust-streaming", "aiokafka", "rocksdict", "orjson", "pydantic", "kio")
        },
    }


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, PARTITIONS, 1) for name in names if name not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def _preproduce(bootstrap: str, prefix: str, plan: LoadPlan) -> float:
    """Events and every submission of ``plan`` on ``<prefix>ticket-requests``; returns seconds."""
    await _create_topics(bootstrap, [f"{prefix}{TICKET_REQUESTS}", f"{prefix}{RESERVATIONS}"])
    start = time.monotonic()
    await create_events_kafka(bootstrap, prefix, plan.events)
    stats = await send_kafka(
        plan,
        bootstrap,
        f"{prefix}{TICKET_REQUESTS}",
        PARTITIONS,
        [math.nan] * len(plan.requests),
    )
    if stats.failed:
        raise SystemExit(f"pre-produce failed for {stats.failed} records: {dict(stats.errors)}")
    return time.monotonic() - start


async def _records_on(bootstrap: str, topics: list[str]) -> int:
    """How many records ``topics`` hold (sum of end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-count")
    await consumer.start()
    try:
        existing = await consumer.topics()
        parts = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in existing
            for p in range(PARTITIONS)
        ]
        return sum((await consumer.end_offsets(parts)).values()) if parts else 0
    finally:
        await consumer.stop()


async def _wait_for_records(bootstrap: str, topic: str, target: int, seconds: float) -> bool:
    """Poll end offsets (cheap, takes no CPU from the worker) until ``topic`` has ``target``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-waiter")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ends = await consumer.end_offsets(parts)
            except KafkaError as exc:  # a busy broker: ask again until the deadline
                logger.warning("end offsets of %s not available yet: %r", topic, exc)
                continue
            if sum(ends.values()) >= target:
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        await consumer.stop()


SETTLE_TIMEOUT_S = 300.0
"""How long a latency phase waits for the worker to finish the work earlier phases left."""

_SETTLE_IGNORED = ("-changelog", "__assignor", "inventory-ticks")
"""Topics whose lag does not mean unfinished work (ticks arrive every second, all the time)."""


async def _wait_until_settled(bootstrap: str, group: str, seconds: float) -> float:
    """Seconds until ``group`` has no lag on its input topics (``nan``: still lagging).

    Each latency phase then measures the decisions of its own load, not the backlog of saga,
    notifications and analytics work an earlier phase left behind.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-settle")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-settle")
    await admin.start()
    await consumer.start()
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            try:
                committed = await admin.list_consumer_group_offsets(group)
                inputs = [tp for tp in committed if not tp.topic.endswith(_SETTLE_IGNORED)]
                ends = await consumer.end_offsets(inputs)
            except KafkaError as exc:  # a busy broker: ask again until the deadline
                logger.warning("group offsets of %s not available yet: %r", group, exc)
                await asyncio.sleep(0.5)
                continue
            if inputs and all(committed[tp].offset >= ends[tp] for tp in inputs):
                return time.monotonic() - start
            await asyncio.sleep(0.5)
        return math.nan
    finally:
        await consumer.stop()
        await admin.close()


@dataclass(frozen=True, slots=True)
class StageResult:
    """Phase 1 (or 4): pre-produced requests decided by a freshly started worker."""

    requests: int
    submissions: int
    decided: int
    seconds: float
    requests_per_s: float
    worker_cpu_s: float
    cpu_us_per_request: float
    peak_rss_mb: float
    broker_cpu_s: float
    decisions: dict[str, int]
    invariants: dict[str, Any]
    agents: str
    """``EVENTPRO_AGENTS`` of the worker ("" = all, i.e. the saga ran beside the decisions)."""
    saga_records: int
    """Records on payments, orders and notifications when the decisions were done."""


@dataclass(frozen=True, slots=True)
class SagaResult:
    available: bool
    note: str
    confirmed: int
    released: int
    seconds: float
    requests_per_s: float
    orders_per_s: float
    worker_cpu_s: float
    invariants: dict[str, Any]


async def _outcome_reader(
    bootstrap: str, prefix: str, plan: LoadPlan, *, saga: bool
) -> tuple[OutcomeTracker, OutcomeReader]:
    """A started reader of ``plan``'s outcomes on ``<prefix>reservations`` (and ``orders``
    with the saga), from the beginning, and the tracker it fills."""
    tracker = OutcomeTracker(plan)
    topics = {f"{prefix}{RESERVATIONS}": PARTITIONS}
    if saga:
        topics[f"{prefix}{ORDERS}"] = PARTITIONS
    reader = OutcomeReader(bootstrap, topics, tracker)
    await reader.start(from_offsets={})
    return tracker, reader


async def _stage(
    *,
    bootstrap: str,
    broker: BrokerProcess,
    worker: ManagedProcess,
    plan: LoadPlan,
    prefix: str,
    scale: Scale,
    saga: bool,
    profile_out: Path | None,
    agents: str = "",
) -> tuple[StageResult, SagaResult | None]:
    worker.start(timeout=180)
    pid = worker.pid
    if pid is None:
        raise SystemExit(f"{worker.name} did not start; see {worker.log_path}")
    cpu0, broker_cpu0 = process_cpu_seconds(pid), process_cpu_seconds(broker.pid or 0)
    profiler = _start_profiler(pid, profile_out) if profile_out else None
    reservations = f"{prefix}{RESERVATIONS}"
    done = await _wait_for_records(bootstrap, reservations, len(plan.requests), scale.timeout)
    cpu1, broker_cpu1 = process_cpu_seconds(pid), process_cpu_seconds(broker.pid or 0)
    if profiler is not None and not saga:
        _stop_profiler(profiler)
    saga_records = await _records_on(bootstrap, [f"{prefix}{t}" for t in SAGA_TOPICS])
    tracker, reader = await _outcome_reader(bootstrap, prefix, plan, saga=saga)
    try:
        if done:
            await reader.run_until(tracker.complete, scale.timeout)
        summary = tracker.summary()
        seconds = summary.decision_seconds()
        stage = StageResult(
            requests=len(plan.requests),
            submissions=len(plan.sends),
            decided=summary.decided,
            seconds=round(seconds, 3),
            requests_per_s=round(summary.decided / seconds, 1) if seconds > 0 else math.nan,
            worker_cpu_s=round(cpu1 - cpu0, 2),
            cpu_us_per_request=round((cpu1 - cpu0) / max(summary.decided, 1) * 1e6, 1),
            peak_rss_mb=round(peak_rss_mb(pid), 1),
            broker_cpu_s=round(broker_cpu1 - broker_cpu0, 2),
            decisions=summary.decisions,
            invariants=invariants(tracker.summary()),
            agents=agents,
            saga_records=saga_records,
        )
        saga_result = (
            await _saga(reader, tracker, lambda: process_cpu_seconds(pid) - cpu0, scale)
            if saga
            else None
        )
    finally:
        if profiler is not None and saga:
            _stop_profiler(profiler)
        await reader.stop()
    return stage, saga_result


async def _saga(
    reader: OutcomeReader, tracker: OutcomeTracker, cpu_used: Callable[[], float], scale: Scale
) -> SagaResult:
    """Read ``orders`` until every reservation is settled, or decide it is not available."""
    start = time.monotonic()
    last_progress, last_finalized = start, -1
    deadline = start + scale.timeout
    while not tracker.complete("final") and time.monotonic() < deadline:
        await reader.poll(250)
        now = time.monotonic()
        if tracker.finalized != last_finalized:
            last_finalized, last_progress = tracker.finalized, now
        if tracker.finals.get("OrderConfirmed", 0) == 0 and now - start > SAGA_START_GRACE_S:
            break
        if now - last_progress > 60.0:
            break
    cpu = cpu_used()
    summary = tracker.summary()
    confirmed = summary.finals.get("OrderConfirmed", 0)
    released = sum(v for k, v in summary.finals.items() if k.startswith("SeatsReleased"))
    if confirmed == 0:
        return SagaResult(
            available=False,
            note="not available: no OrderConfirmed on `orders` within "
            f"{SAGA_START_GRACE_S:.0f} s of the last decision",
            confirmed=0,
            released=released,
            seconds=math.nan,
            requests_per_s=math.nan,
            orders_per_s=math.nan,
            worker_cpu_s=round(cpu, 2),
            invariants=invariants(tracker.summary()),
        )
    first = summary.first_decided_at or 0.0
    seconds = (summary.last_final_at or first) - first
    complete = tracker.complete("final")
    return SagaResult(
        available=True,
        note="complete"
        if complete
        else f"incomplete: {summary.finalized} of {summary.reserved} reservations settled",
        confirmed=confirmed,
        released=released,
        seconds=round(seconds, 3),
        requests_per_s=round(summary.decided / seconds, 1) if seconds > 0 else math.nan,
        orders_per_s=round(confirmed / seconds, 1) if seconds > 0 else math.nan,
        worker_cpu_s=round(cpu, 2),
        invariants=invariants(tracker.summary()),
    )


def _start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        logger.warning("py-spy is not installed; no profile (pip install py-spy)")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "200",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(2)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def summarise_profile(raw: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, self %, total %) of the heaviest functions in a py-spy raw (folded) file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return []
    return [
        (name, round(100.0 * own[name] / samples, 1), round(100.0 * total[name] / samples, 1))
        for name, _ in own.most_common(top)
    ]


_INCLUSIVE_MARKERS = ("eventpro/", "faust/", "aiokafka/", "rocksdict", "pydantic/")


def inclusive_profile(raw: Path, top: int = 25) -> list[tuple[str, float]]:
    """(function, total %) of EventPro, Faust, aiokafka and store frames, heaviest first.

    Frames present in nearly every sample (the worker's entry points) are left out.
    """
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        samples += int(count_text)
        for frame in set(stack.split(";")):
            if any(marker in frame for marker in _INCLUSIVE_MARKERS):
                total[frame] += int(count_text)
    if not samples:
        return []
    ranked = [(f, round(100.0 * c / samples, 1)) for f, c in total.most_common()]
    return [(f, pct) for f, pct in ranked if pct < 80.0][:top]


async def _latency(bootstrap: str, scale: Scale, rate: int) -> dict[str, Any]:
    users = max(1, int(rate * scale.latency_seconds))
    spec = LoadSpec(
        users=users,
        events=scale.latency_events,
        capacity=max(1, users // scale.latency_events),
        duplicate_rate=0.0,
        profile="rate",
        rate=float(rate),
        timeout=scale.latency_timeout,
        seed=rate,
        run_id=f"lat{rate}-{uuid.uuid4().hex[:6]}",
    )
    report = await run_loadgen(spec, broker_url=bootstrap, topic_prefix=SAGA_PREFIX, progress=False)
    data = report.to_dict()
    latency = data["latency_ms"]["decision"]
    return {
        "offered_per_s": rate,
        "requests": users,
        "achieved_send_per_s": data["sent"]["rate_per_s"],
        "p50_ms": latency["p50_ms"],
        "p95_ms": latency["p95_ms"],
        "p99_ms": latency["p99_ms"],
        "max_ms": latency["max_ms"],
        "timed_out": report.timed_out,
        "invariants": invariants(report.outcomes),
    }


def _phase1_spec(scale: Scale, run_id: str) -> LoadSpec:
    return LoadSpec(
        users=scale.requests,
        events=scale.events,
        capacity=scale.capacity,
        duplicate_rate=scale.duplicate_rate,
        resubmit_delay=0.0,
        profile="all",
        seed=7,
        run_id=run_id,
    )


def _eventpro_env(
    app_id: str, prefix: str, batch_size: int | None = None, agents: str = ""
) -> dict[str, str]:
    batching = {} if batch_size is None else {"EVENTPRO_INVENTORY_BATCH_SIZE": str(batch_size)}
    return {
        **batching,
        "EVENTPRO_AGENTS": agents,
        "EVENTPRO_APP_ID": app_id,
        "EVENTPRO_TOPIC_PREFIX": prefix,
        "EVENTPRO_PARTITIONS": str(PARTITIONS),
        "EVENTPRO_LOG_LEVEL": "WARNING",
        "EVENTPRO_GATEWAY_LATENCY_DISTRIBUTION": "fixed",
        "EVENTPRO_GATEWAY_LATENCY_MS_MIN": str(GATEWAY_LATENCY_MS),
        "EVENTPRO_GATEWAY_LATENCY_MS_MAX": str(GATEWAY_LATENCY_MS),
        "EVENTPRO_GATEWAY_DECLINE_RATE": "0",
    }


def _naive_worker(bootstrap: str, base: Path) -> ManagedProcess:
    from bench.baseline_naive import READY_PREFIX

    env = {
        **os.environ,
        "BENCH_NAIVE_BROKER": f"kafka://{bootstrap}",
        "BENCH_NAIVE_APP_ID": f"naive-{uuid.uuid4().hex[:6]}",
        "BENCH_NAIVE_INPUT": f"{NAIVE_PREFIX}{TICKET_REQUESTS}",
        "BENCH_NAIVE_OUTPUT": f"{NAIVE_PREFIX}{RESERVATIONS}",
        "BENCH_NAIVE_PARTITIONS": str(PARTITIONS),
        "BENCH_NAIVE_DATADIR": str(base / "naive-data"),
        "BENCH_NAIVE_WEB_PORT": str(free_port()),
        "BENCH_NAIVE_LOG_LEVEL": "WARNING",
    }
    proc = ManagedProcess(
        [sys.executable, "-m", "bench.baseline_naive"],
        ready_prefix=READY_PREFIX,
        log_path=base / "naive.log",
        env=env,
        cwd=REPO_ROOT,
    )
    proc.name = "naive baseline"
    return proc


async def _stage_only(
    bootstrap: str,
    broker: BrokerProcess,
    worker: ManagedProcess,
    plan: LoadPlan,
    prefix: str,
    scale: Scale,
    *,
    agents: str = "",
    profile_out: Path | None = None,
) -> StageResult:
    """Phase 1 alone (no saga) with ``worker``, which is stopped afterwards."""
    try:
        stage, _ = await _stage(
            bootstrap=bootstrap,
            broker=broker,
            worker=worker,
            plan=plan,
            prefix=prefix,
            scale=scale,
            saga=False,
            profile_out=profile_out,
            agents=agents,
        )
    finally:
        worker.stop(timeout=15)
    return stage


async def _per_record_stage(
    bootstrap: str, broker: BrokerProcess, base: Path, scale: Scale, run_id: str
) -> StageResult:
    """Phase 1 with the per-record inventory path (batch size 1): the "before" figure."""
    plan = build_plan(_phase1_spec(scale, run_id))
    print(f"phase 1a: per record (batch 1) on {len(plan.sends):,} submissions", flush=True)
    await _preproduce(bootstrap, PER_RECORD_PREFIX, plan)
    worker = WorkerProcess(
        broker=bootstrap,
        web_port=free_port(),
        data_dir=base / "eventpro-per-record",
        log_path=base / "eventpro-per-record.log",
        env=_eventpro_env(
            f"bench-per-record-{run_id}", PER_RECORD_PREFIX, batch_size=1, agents=STAGE_AGENTS
        ),
    )
    stage = await _stage_only(
        bootstrap, broker, worker, plan, PER_RECORD_PREFIX, scale, agents=STAGE_AGENTS
    )
    print(f"phase 1a: {stage.requests_per_s:,.0f} requests/s", flush=True)
    return stage


async def _saga_and_latency(
    bootstrap: str,
    broker: BrokerProcess,
    base: Path,
    scale: Scale,
    run_id: str,
    skip: frozenset[str],
    profile_out: Path | None,
) -> dict[str, Any]:
    """Phases 2 and 3 on one worker running every agent (the default batch size).

    Phase 2 decides its own copy of the requests with the saga, notifications and analytics
    running beside the decisions, then waits for every order; phase 3 offers fixed rates.
    """
    results: dict[str, Any] = {
        "reservation_stage_with_saga": None,
        "full_saga": None,
        "latency": [],
        "eventpro_worker_peak_rss_mb": None,
        "metrics_scrape": None,
    }
    if {"saga", "latency"} <= skip:
        return results
    group = f"bench-saga-{run_id}"
    worker = WorkerProcess(
        broker=bootstrap,
        web_port=free_port(),
        data_dir=base / "eventpro-saga",
        log_path=base / "eventpro-saga.log",
        env=_eventpro_env(group, SAGA_PREFIX),
    )
    try:
        if "saga" in skip:
            worker.start(timeout=180)
        else:
            plan = build_plan(_phase1_spec(scale, run_id))
            print(f"phase 2: full saga on {len(plan.sends):,} submissions", flush=True)
            await _preproduce(bootstrap, SAGA_PREFIX, plan)
            stage, saga = await _stage(
                bootstrap=bootstrap,
                broker=broker,
                worker=worker,
                plan=plan,
                prefix=SAGA_PREFIX,
                scale=scale,
                saga=True,
                profile_out=profile_out,
            )
            results["reservation_stage_with_saga"] = asdict(stage)
            results["full_saga"] = asdict(saga) if saga else None
            # On an idle worker: what the scrape itself costs, not the backlog's queueing.
            await _wait_until_settled(bootstrap, group, SETTLE_TIMEOUT_S)
            results["metrics_scrape"] = await _metrics_scrapes(worker.url)
        for rate in () if "latency" in skip else scale.latency_rates:
            settled = await _wait_until_settled(bootstrap, group, SETTLE_TIMEOUT_S)
            print(f"phase 3: latency at {rate:,} requests/s offered", flush=True)
            cpu = _CpuMeter(worker.pid or 0, broker.pid or 0)
            entry = await _latency(bootstrap, scale, rate)
            drained = await _wait_until_settled(bootstrap, group, SETTLE_TIMEOUT_S)
            results["latency"].append(
                {**entry, "settle_s": settled, "drained_s": drained, **cpu.per_request(entry)}
            )
        results["eventpro_worker_peak_rss_mb"] = (
            round(peak_rss_mb(worker.pid), 1) if worker.pid else None
        )
    finally:
        worker.stop(timeout=15)
    return results


class _CpuMeter:
    """CPU the worker and the broker spend from now on, per request of a latency phase."""

    def __init__(self, worker_pid: int, broker_pid: int) -> None:
        self.pids = {"worker": worker_pid, "broker": broker_pid}
        self.start = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}

    def per_request(self, entry: dict[str, Any]) -> dict[str, float]:
        """``<name>_cpu_us_per_request`` since this meter started, over ``entry["requests"]``."""
        requests = entry["requests"]
        return {
            f"{name}_cpu_us_per_request": round(
                (process_cpu_seconds(pid) - self.start[name]) * 1e6 / requests
            )
            if requests
            else math.nan
            for name, pid in self.pids.items()
        }


async def _metrics_scrapes(url: str) -> dict[str, Any]:
    """Time :data:`METRICS_SCRAPES` ``GET /metrics`` on a worker, while ``GET /health`` is
    asked back to back: a scrape runs on the worker's event loop, and the slowest health
    answer is the longest the loop (and so every decision) waited meanwhile."""
    timings: list[float] = []
    health: list[float] = []
    body = ""
    scraping = True
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def ask_health() -> None:
            while scraping:
                start = time.perf_counter()
                async with http.get(f"{url}/health") as response:
                    await response.read()
                health.append((time.perf_counter() - start) * 1000)

        prober = asyncio.create_task(ask_health())
        try:
            for _ in range(METRICS_SCRAPES):
                start = time.perf_counter()
                async with http.get(f"{url}/metrics") as response:
                    response.raise_for_status()
                    body = await response.text()
                timings.append((time.perf_counter() - start) * 1000)
        finally:
            scraping = False
            await prober
    keys = sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("eventpro_table_keys{")
    )
    timings.sort()
    return {
        "scrapes": len(timings),
        "median_ms": round(timings[len(timings) // 2], 2),
        "max_ms": round(timings[-1], 2),
        "table_keys": int(keys),
        "health_answers": len(health),
        "health_max_ms": round(max(health), 2) if health else None,
    }


async def _group_settled(workers: list[WorkerProcess], seconds: float) -> bool:
    """Whether every worker holds partitions and none is rebalancing within ``seconds``."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while time.monotonic() < deadline:
            states = []
            for worker in workers:
                try:
                    async with http.get(f"{worker.url}/ready") as response:
                        states.append(await response.json() if response.status == 200 else None)
                except aiohttp.ClientError:
                    states.append(None)
            if all(s and s["assigned_partitions"] > 0 and not s["rebalancing"] for s in states):
                return True
            await asyncio.sleep(0.5)
    return False


async def _scaled_saga(bootstrap: str, base: Path, scale: Scale, run_id: str) -> dict[str, Any]:
    """Phase 2b: the full saga on :data:`SCALED_WORKERS` workers of one consumer group.

    The requests are produced once every worker holds its partitions (a rebalance in the
    middle would stall them all), so the load generator shares the machine for their first
    seconds; phase 2 pre-produces instead.
    """
    plan = build_plan(_phase1_spec(scale, run_id))
    group = f"bench-scaled-{run_id}"
    env = {
        **_eventpro_env(group, SCALED_PREFIX),
        "EVENTPRO_TABLE_STANDBY_REPLICAS": str(SCALED_STANDBY_REPLICAS),
    }
    workers = [
        WorkerProcess(
            broker=bootstrap,
            web_port=free_port(),
            data_dir=base / f"eventpro-scaled-{index}",
            log_path=base / f"eventpro-scaled-{index}.log",
            env=env,
        )
        for index in range(SCALED_WORKERS)
    ]
    print(
        f"phase 2b: full saga on {SCALED_WORKERS} workers, {len(plan.sends):,} submissions",
        flush=True,
    )
    await _create_topics(
        bootstrap, [f"{SCALED_PREFIX}{TICKET_REQUESTS}", f"{SCALED_PREFIX}{RESERVATIONS}"]
    )
    try:
        for worker in workers:
            worker.start(timeout=180)
        if not await _group_settled(workers, 120):
            raise SystemExit(f"phase 2b: the {SCALED_WORKERS} workers never shared the partitions")
        pids = [worker.pid or 0 for worker in workers]
        cpu0 = sum(process_cpu_seconds(pid) for pid in pids)

        def cpu_used() -> float:
            return sum(process_cpu_seconds(pid) for pid in pids) - cpu0

        await _preproduce(bootstrap, SCALED_PREFIX, plan)
        reservations = f"{SCALED_PREFIX}{RESERVATIONS}"
        done = await _wait_for_records(bootstrap, reservations, len(plan.requests), scale.timeout)
        tracker, reader = await _outcome_reader(bootstrap, SCALED_PREFIX, plan, saga=True)
        try:
            if done:
                await reader.run_until(tracker.complete, scale.timeout)
            summary = tracker.summary()
            seconds = summary.decision_seconds()
            decisions_per_s = round(summary.decided / seconds, 1) if seconds > 0 else math.nan
            saga = await _saga(reader, tracker, cpu_used, scale)
        finally:
            await reader.stop()
        return {
            "workers": SCALED_WORKERS,
            "standby_replicas": SCALED_STANDBY_REPLICAS,
            "decided": summary.decided,
            "decisions_per_s": decisions_per_s,
            "peak_rss_mb": [round(peak_rss_mb(pid), 1) for pid in pids],
            "saga": asdict(saga),
        }
    finally:
        for worker in workers:
            worker.stop(timeout=15)


async def _soak(bootstrap: str, base: Path, scale: Scale, run_id: str) -> dict[str, Any]:
    """Phase 5 (:mod:`bench.soak`) on a worker of its own, started with short retention."""
    worker = WorkerProcess(
        broker=bootstrap,
        web_port=free_port(),
        data_dir=base / "eventpro-soak",
        log_path=base / "eventpro-soak.log",
        env={**_eventpro_env(f"bench-soak-{run_id}", SOAK_PREFIX), **SOAK_ENV},
    )
    print(
        f"phase 5: {scale.soak_rate:,} requests/s for {scale.soak_seconds:.0f} s (memory)",
        flush=True,
    )
    try:
        worker.start(timeout=180)
        return await run_soak(
            bootstrap,
            worker,
            SOAK_PREFIX,
            seconds=scale.soak_seconds,
            rate=scale.soak_rate,
            partitions=PARTITIONS,
        )
    finally:
        worker.stop(timeout=15)


def _profile_path(profile_dir: Path | None, name: str) -> Path | None:
    return None if profile_dir is None else profile_dir / f"{name}-profile.txt"


def _ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return round(numerator / denominator, 2)


async def run_benchmark(
    scale_name: str,
    base: Path,
    profile_dir: Path | None,
    skip: frozenset[str] = frozenset(),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """The phases not in ``skip`` (``floor``, ``saga``, ``latency``, ``per-record``,
    ``scaled``, ``soak``) on a fresh broker.

    With ``profile_dir``, phases 1 and 2 write py-spy profiles there (see :data:`PROFILES`).

    ``batch_size`` is the batched worker's ``EVENTPRO_INVENTORY_BATCH_SIZE``; the per-record
    phase always runs with 1.
    """
    scale = SCALES[scale_name]
    broker = BrokerProcess(
        base / "broker",
        log_path=base / "broker.log",
        log_level="WARNING",
        extra_args=("--initial-rebalance-delay-ms", "300"),
    )
    results: dict[str, Any] = {}
    with broker:
        bootstrap = broker.bootstrap
        run_id = uuid.uuid4().hex[:6]
        results["eventpro_batch_size"] = batch_size
        if "floor" in skip:
            results["faust_floor"] = None
        else:
            print(f"phase 0: Faust floor on {scale.requests:,} records", flush=True)
            await _create_topics(bootstrap, [FLOOR_TOPIC])
            results["faust_floor"] = await run_floor(
                bootstrap, base, scale.requests, PARTITIONS, free_port()
            )
        results["reservation_stage_per_record"] = (
            None
            if "per-record" in skip
            else asdict(await _per_record_stage(bootstrap, broker, base, scale, run_id))
        )
        plan = build_plan(_phase1_spec(scale, run_id))
        print(f"phase 1: pre-producing {len(plan.sends):,} submissions", flush=True)
        results["preproduce_s"] = round(await _preproduce(bootstrap, EVENTPRO_PREFIX, plan), 2)
        worker = WorkerProcess(
            broker=bootstrap,
            web_port=free_port(),
            data_dir=base / "eventpro-worker",
            log_path=base / "eventpro-worker.log",
            env=_eventpro_env(
                f"bench-eventpro-{run_id}",
                EVENTPRO_PREFIX,
                batch_size=batch_size,
                agents=STAGE_AGENTS,
            ),
        )
        stage = await _stage_only(
            bootstrap,
            broker,
            worker,
            plan,
            EVENTPRO_PREFIX,
            scale,
            agents=STAGE_AGENTS,
            profile_out=_profile_path(profile_dir, "stage"),
        )
        results["reservation_stage"] = asdict(stage)
        print(f"phase 1: {stage.requests_per_s:,.0f} requests/s", flush=True)
        results.update(
            await _saga_and_latency(
                bootstrap, broker, base, scale, run_id, skip, _profile_path(profile_dir, "saga")
            )
        )
        results["scaled_saga"] = (
            None if "scaled" in skip else await _scaled_saga(bootstrap, base, scale, run_id)
        )
        naive_plan = build_plan(_phase1_spec(scale, run_id))
        print(f"phase 4: naive baseline on {len(naive_plan.sends):,} submissions", flush=True)
        await _preproduce(bootstrap, NAIVE_PREFIX, naive_plan)
        naive = _naive_worker(bootstrap, base)
        baseline = await _stage_only(bootstrap, broker, naive, naive_plan, NAIVE_PREFIX, scale)
        results["naive_baseline"] = asdict(baseline)
        results["ratio_eventpro_to_baseline"] = _ratio(
            stage.requests_per_s, baseline.requests_per_s
        )
        before = results["reservation_stage_per_record"]
        results["ratio_batched_to_per_record"] = (
            _ratio(stage.requests_per_s, before["requests_per_s"]) if before else None
        )
        results["cpu_ratio_per_record_to_batched"] = (
            _ratio(before["cpu_us_per_request"], stage.cpu_us_per_request) if before else None
        )
        results["soak"] = None if "soak" in skip else await _soak(bootstrap, base, scale, run_id)
    checks = [results["reservation_stage"]["invariants"], results["naive_baseline"]["invariants"]]
    for optional in ("reservation_stage_per_record", "reservation_stage_with_saga"):
        if results[optional]:
            checks.append(results[optional]["invariants"])
    checks += [entry["invariants"] for entry in results["latency"]]
    if results["full_saga"] and results["full_saga"]["available"]:
        checks.append(results["full_saga"]["invariants"])
    if results["scaled_saga"]:
        checks.append(results["scaled_saga"]["saga"]["invariants"])
    if results["soak"]:
        checks.append(results["soak"]["invariants"])
    results["invariants_ok"] = all(check["ok"] for check in checks)
    return results


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def render_markdown(data: dict[str, Any]) -> str:
    r = data["results"]
    stage, naive, saga = r["reservation_stage"], r["naive_baseline"], r["full_saga"]
    before = r.get("reservation_stage_per_record")
    batch = r.get("eventpro_batch_size")
    scale = data["scale"]
    lines = [
        f"# EventPro pipeline benchmark ({data['scale_name']})",
        "",
        f"Command: `{data['command']}`  ",
        f"Date: {data['date']}  ",
        f"Workload: {scale['requests']:,} ticket requests (+{scale['duplicate_rate']:.0%} "
        f"resubmissions) across {scale['events']} events of {scale['capacity']:,} seats, "
        "quantity mix 1:50,2:30,4:20, keyed by event_id, 4 partitions. Broker (embedded, "
        "own process) and one worker process on this machine (two in phase 2b), "
        "EVENTPRO_LOG_LEVEL=WARNING.",
        "",
        f"Invariants (no oversell, one outcome per request) in every phase: "
        f"**{'ok' if r['invariants_ok'] else 'VIOLATED'}**",
        "",
        *render_floor(r.get("faust_floor"), stage.get("cpu_us_per_request")),
        "## 1. Reservation stage (pre-produced requests, one worker)",
        "",
        "| implementation | requests/s | seconds | worker CPU s | CPU µs/request | peak RSS MiB "
        "| broker CPU s | invariants |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    with_saga = r.get("reservation_stage_with_saga")
    rows = [(f"EventPro, batched ({batch or '?'}, after)", stage)]
    if before:
        rows.insert(0, ("EventPro, per record (batch 1, before)", before))
    if with_saga:
        rows.append(("EventPro, batched, saga running beside it", with_saga))
    rows.append(("naive Faust baseline", naive))
    for name, s in rows:
        lines.append(
            f"| {name} | {_fmt(s['requests_per_s'])} | {_fmt(s['seconds'], '.2f')} | "
            f"{_fmt(s['worker_cpu_s'], '.1f')} | {_fmt(s['cpu_us_per_request'])} | "
            f"{_fmt(s['peak_rss_mb'])} | {_fmt(s['broker_cpu_s'], '.1f')} | "
            f"{'ok' if s['invariants']['ok'] else 'VIOLATED'} |"
        )
    ratios = [f"EventPro batched / baseline: **{_fmt(r['ratio_eventpro_to_baseline'], '.2f')}x**"]
    if before:
        ratios.append(
            f"batched / per record: **{_fmt(r.get('ratio_batched_to_per_record'), '.2f')}x** "
            f"requests/s, {_fmt(r.get('cpu_ratio_per_record_to_batched'), '.2f')}x less CPU "
            "per request"
        )
    lines += [
        "",
        "Ratios: " + "; ".join(ratios) + ". Each row is a fresh worker on its own copy of "
        "the requests. The per-record and batched rows run the inventory agent alone "
        f"(`EVENTPRO_AGENTS={STAGE_AGENTS}`; saga records written meanwhile: "
        f"{stage.get('saga_records', 'n/a')}), like the baseline, which decides and nothing "
        "else; the *saga running* row is phase 2's worker, which runs every agent (payments, "
        "notifications and analytics share its CPU) and also serves phase 3. EventPro's "
        "workers run on uvloop (`EVENTPRO_EVENT_LOOP`) with a tuned garbage collector "
        "(`EVENTPRO_GC_YOUNG_THRESHOLD`), the baseline on Faust's default asyncio loop and "
        "Python's default collector. Seconds are "
        "first to last decision (outcome `occurred_at`); CPU is the worker process's "
        "user+system time from ready until all were decided.",
        "",
        "Decisions (EventPro batched): "
        + ", ".join(f"{k} {v:,}" for k, v in stage["decisions"].items()),
        "",
        f"## 2. Full saga (request -> OrderConfirmed, gateway fixed {GATEWAY_LATENCY_MS:.0f} ms)",
        "",
    ]
    if saga and saga["available"]:
        lines += [
            "| requests/s | confirmed orders/s | seconds | confirmed | released | worker CPU s "
            "| status | invariants |",
            "|---:|---:|---:|---:|---:|---:|---|---|",
            f"| {_fmt(saga['requests_per_s'])} | {_fmt(saga['orders_per_s'])} | "
            f"{_fmt(saga['seconds'], '.2f')} | {saga['confirmed']:,} | {saga['released']:,} | "
            f"{_fmt(saga['worker_cpu_s'], '.1f')} | {saga['note']} | "
            f"{'ok' if saga['invariants']['ok'] else 'VIOLATED'} |",
            "",
            "Phase 2's worker (every agent): seconds from the first decision to the last "
            "OrderConfirmed; CPU from ready until then.",
        ]
        scrape = r.get("metrics_scrape")
        if scrape:
            lines += [
                "",
                f"A Prometheus scrape of this worker once idle (`GET /metrics`, "
                f"{scrape['table_keys']:,} table keys reported): median "
                f"{_fmt(scrape['median_ms'], '.1f')} ms, max {_fmt(scrape['max_ms'], '.1f')} ms "
                f"over {scrape['scrapes']} scrapes. Meanwhile `GET /health`, asked back to back "
                f"({scrape['health_answers']:,} times), took at most "
                f"{_fmt(scrape['health_max_ms'], '.1f')} ms: the longest the worker's event "
                "loop (and any decision) waited for a scrape.",
            ]
    else:
        lines.append(saga["note"] if saga else "not measured in this run (--skip saga)")
    scaled = r.get("scaled_saga")
    lines += ["", "## 2b. Full saga, scaled out (one consumer group, one machine)", ""]
    if scaled and scaled["saga"]["available"]:
        scaled_saga = scaled["saga"]
        lines += [
            "| workers | standby replicas | decisions/s | requests/s | confirmed orders/s "
            "| seconds | workers' CPU s | peak RSS MiB | status | invariants |",
            "|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
            f"| {scaled['workers']} | {scaled['standby_replicas']} | "
            f"{_fmt(scaled['decisions_per_s'])} | {_fmt(scaled_saga['requests_per_s'])} | "
            f"{_fmt(scaled_saga['orders_per_s'])} | {_fmt(scaled_saga['seconds'], '.2f')} | "
            f"{_fmt(scaled_saga['worker_cpu_s'], '.1f')} | "
            f"{' / '.join(_fmt(v) for v in scaled['peak_rss_mb'])} | {scaled_saga['note']} | "
            f"{'ok' if scaled_saga['invariants']['ok'] else 'VIOLATED'} |",
            "",
            "Phase 2's workload on several workers of one group (every agent in each, "
            "partitions shared), the requests produced once every worker held its partitions; "
            "no standby replicas (`EVENTPRO_TABLE_STANDBY_REPLICAS=0`): with one, each worker "
            "also replays the other's changelogs. Same columns as phase 2; CPU is all workers'.",
        ]
    else:
        lines.append(
            scaled["saga"]["note"] if scaled else "not measured in this run (--skip scaled)"
        )
    lines += [
        "",
        "## 3. Decision latency at fixed offered rates",
        "",
        "Send (producer append) to outcome `occurred_at`; the load generator produces and "
        "reads outcomes in the benchmark process while the worker runs. Each rate starts once "
        "the worker's group has no lag left from the phases before it (*settled after*: the "
        f"seconds that took; `n/a`: still lagging after {SETTLE_TIMEOUT_S:.0f} s). *Drained "
        "after*: seconds from the last decision until the group had no lag left (the saga, "
        "notifications and analytics of these requests done). CPU per request: the worker's "
        "and the broker's user+system time from the first send until drained, over the "
        "requests; at a low rate each record arrives alone and pays the per-fetch, "
        "per-batch and per-produce costs that a backlog shares among many.",
        "",
        "| offered/s | settled after s | achieved send/s | requests | p50 ms | p95 ms | p99 ms "
        "| max ms | drained after s | worker CPU µs/request | broker CPU µs/request "
        "| invariants |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    if not r["latency"]:
        lines.append("| not measured in this run (--skip latency) | | | | | | | | | | | |")
    for entry in r["latency"]:
        lines.append(
            f"| {entry['offered_per_s']:,} | {_fmt(entry.get('settle_s'), '.1f')} | "
            f"{_fmt(entry['achieved_send_per_s'])} | "
            f"{entry['requests']:,} | {_fmt(entry['p50_ms'], '.1f')} | "
            f"{_fmt(entry['p95_ms'], '.1f')} | {_fmt(entry['p99_ms'], '.1f')} | "
            f"{_fmt(entry['max_ms'], '.1f')} | {_fmt(entry.get('drained_s'), '.1f')} | "
            f"{_fmt(entry.get('worker_cpu_us_per_request'))} | "
            f"{_fmt(entry.get('broker_cpu_us_per_request'))} | "
            + ("ok" if entry["invariants"]["ok"] else "VIOLATED")
            + (
                f" (timed out: {entry['invariants']['decided']:,} of "
                f"{entry['invariants']['expected']:,} decided)"
                if entry["timed_out"]
                else ""
            )
            + " |"
        )
    lines += render_soak(r.get("soak"))
    for name, profile in (data.get("profiles") or {}).items():
        lines += [
            "",
            f"## Where the worker's time goes (py-spy, {PROFILES[name]})",
            "",
            "| function | self % | total % |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{func}` | {own} | {tot} |" for func, own, tot in profile["self"]]
        lines += [
            "",
            "Inclusive time of EventPro, Faust and Kafka-client functions (% of samples):",
            "",
            "| function | total % |",
            "|---|---:|",
        ]
        lines += [f"| `{func}` | {tot} |" for func, tot in profile["inclusive"]]
    m = data["machine"]
    if data.get("note"):
        lines += ["", f"Note: {data['note']}"]
    lines += [
        "",
        "## Machine",
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, "
        f"Python {m['python']}, EventPro {m['eventpro_commit']}, "
        f"load average at the end {m.get('load_average_at_end', 'n/a')}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def write_report(
    out: Path,
    scale_name: str,
    results: dict[str, Any],
    profile_dir: Path | None,
    skip: frozenset[str] = frozenset(),
    argv: list[str] | None = None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "benchmark": "pipeline",
        "scale_name": scale_name,
        "scale": asdict(SCALES[scale_name]),
        "command": "python -m bench.pipeline " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_facts(),
        "results": results,
        "skipped": sorted(skip),
        "profiles": {
            name: {"self": summarise_profile(raw), "inclusive": inclusive_profile(raw)}
            for name in PROFILES
            if (raw := _profile_path(profile_dir, name)) is not None and raw.exists()
        },
    }
    (out / f"pipeline-{scale_name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = out / f"pipeline-{scale_name}.md"
    md.write_text(render_markdown(data))
    return md


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="py-spy the batched EventPro worker of phase 1 and the worker of phase 2 "
        "(needs py-spy); raw profiles go to <out>/pipeline-<scale>-<stage|saga>-profile.txt.",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="Comma-separated phases to leave out: floor, saga, latency, per-record, scaled, "
        "soak (for quick runs).",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="EVENTPRO_INVENTORY_BATCH_SIZE of the batched worker (the per-record phase uses 1).",
    )
    args = parser.parse_args(argv)
    skip = frozenset(part.strip() for part in args.skip.split(",") if part.strip())
    if not skip <= PHASES:
        parser.error(f"--skip takes {', '.join(sorted(PHASES))}, got {args.skip!r}")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        profile_dir = Path(tmp) if args.profile_worker else None
        results = asyncio.run(
            run_benchmark(args.scale, Path(tmp), profile_dir, skip, batch_size=args.batch_size)
        )
        md = write_report(args.out, args.scale, results, profile_dir, skip, argv)
        for name in PROFILES:
            raw = _profile_path(profile_dir, name)
            if raw is not None and raw.exists():
                shutil.copy(raw, args.out / f"pipeline-{args.scale}-{name}-profile.txt")
    print(md.read_text())
    if not results["invariants_ok"]:
        raise SystemExit("invariants violated; see the report")
    return results


if __name__ == "__main__":
    main()
