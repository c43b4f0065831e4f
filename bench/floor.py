"""Benchmark phase 0: the Faust floor, what a Faust agent that only counts records costs.

    python -m bench.floor      # the counting worker, configured by the BENCH_FLOOR_* variables

Every EventPro agent is a Faust agent, so no stage can decide requests faster than Faust hands
records to an agent. This phase pre-produces raw records (the size of a ticket request) and
runs a worker whose one agent takes them in batches (``take_events(1000, 20 ms)``) and counts
them, twice on the same records: with Faust's own Kafka transport, and with EventPro's
(:mod:`eventpro.transport`), whose fetch loop hands records to the streams inline. Both run on
uvloop, like EventPro's workers. The worker times itself from its first record to its last
(records/s, CPU µs per record: user + system of all its threads) and writes that as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.types import TransportT

from eventpro.processes import ManagedProcess, exit_with_parent

__all__ = ("READY_PREFIX", "TRANSPORTS", "main", "render_floor", "run_floor")

READY_PREFIX = "faust floor ready: "
TRANSPORTS = ("faust", "eventpro")
"""Faust's own aiokafka transport, and EventPro's."""
RECORD_BYTES = 250
"""About the size of a ``TicketRequested`` envelope."""
TOPIC = "floor-records"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _app(transport: str) -> faust.App:
    """The counting app on ``transport``, configured from the environment."""
    from eventpro.transport import EventProTransport

    class FloorApp(faust.App):  # type: ignore[misc]
        def _new_transport(self) -> TransportT:
            if transport == "eventpro":
                return EventProTransport(self.conf.broker_consumer, self)
            return super()._new_transport()

    env = os.environ
    return FloorApp(
        env["BENCH_FLOOR_APP_ID"],
        broker=env["BENCH_FLOOR_BROKER"],
        store="memory://",
        datadir=env["BENCH_FLOOR_DATADIR"],
        web_port=int(env["BENCH_FLOOR_WEB_PORT"]),
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        topic_partitions=int(env["BENCH_FLOOR_PARTITIONS"]),
        consumer_auto_offset_reset="earliest",
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _write_result(path: Path, timing: dict[str, float]) -> None:
    path.write_text(json.dumps(timing))


def main() -> None:
    """Count ``BENCH_FLOOR_RECORDS`` records, write the timing to ``BENCH_FLOOR_RESULT``."""
    import uvloop

    transport = os.environ["BENCH_FLOOR_TRANSPORT"]
    if transport not in TRANSPORTS:
        raise SystemExit(f"BENCH_FLOOR_TRANSPORT must be one of {TRANSPORTS}, got {transport!r}")
    records = int(os.environ["BENCH_FLOOR_RECORDS"])
    result_path = Path(os.environ["BENCH_FLOOR_RESULT"])
    app = _app(transport)
    topic = app.topic(
        os.environ["BENCH_FLOOR_TOPIC"],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    started: list[float] = []

    @app.agent(topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        counted = 0
        async for events in stream.take_events(1000, within=0.02):
            if not started:
                started.extend((time.perf_counter(), _cpu_seconds()))
            counted += len(events)
            if counted >= records:
                seconds = time.perf_counter() - started[0]
                cpu = _cpu_seconds() - started[1]
                _write_result(result_path, {"records": counted, "seconds": seconds, "cpu_s": cpu})
                os._exit(0)  # measured: nothing after this is worth waiting for

    class _Worker(faust.Worker):  # type: ignore[misc]
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            print(f"{READY_PREFIX}{transport}", flush=True)

    exit_with_parent()  # a killed benchmark leaves no counting worker behind
    uvloop.install()
    worker = _Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


async def _produce(bootstrap: str, topic: str, records: int, partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        value = b"x" * RECORD_BYTES
        pending = []
        for i in range(records):
            pending.append(
                await producer.send(topic, value, key=str(i).encode(), partition=i % partitions)
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _count_once(
    bootstrap: str, base: Path, transport: str, records: int, partitions: int, web_port: int
) -> dict[str, Any]:
    """One counting worker over the records; its timing."""
    result = base / f"floor-{transport}.json"
    result.unlink(missing_ok=True)
    proc = ManagedProcess(
        [sys.executable, "-m", "bench.floor"],
        ready_prefix=READY_PREFIX,
        log_path=base / f"floor-{transport}.log",
        env={
            **os.environ,
            "BENCH_FLOOR_TRANSPORT": transport,
            "BENCH_FLOOR_BROKER": f"kafka://{bootstrap}",
            "BENCH_FLOOR_APP_ID": f"floor-{transport}-{uuid.uuid4().hex[:6]}",
            "BENCH_FLOOR_TOPIC": TOPIC,
            "BENCH_FLOOR_RECORDS": str(records),
            "BENCH_FLOOR_PARTITIONS": str(partitions),
            "BENCH_FLOOR_DATADIR": str(base / f"floor-{transport}-data"),
            "BENCH_FLOOR_WEB_PORT": str(web_port),
            "BENCH_FLOOR_RESULT": str(result),
        },
        cwd=REPO_ROOT,
    )
    proc.name = f"floor worker ({transport})"
    try:
        proc.start(timeout=120)
        # Far beyond any rate seen; the worker exits once it counted everything.
        await asyncio.to_thread(proc.wait_exit, 60 + records / 500)
        if not result.exists():
            raise RuntimeError(
                f"the {transport} floor worker counted nothing in time:\n{proc.log_tail()}"
            )
    finally:
        proc.stop(timeout=15)
    timing = json.loads(result.read_text())
    return {
        "transport": transport,
        "records": timing["records"],
        "seconds": round(timing["seconds"], 2),
        "records_per_s": round(timing["records"] / timing["seconds"]),
        "cpu_s": round(timing["cpu_s"], 2),
        "cpu_us_per_record": round(1e6 * timing["cpu_s"] / timing["records"], 1),
    }


async def run_floor(
    bootstrap: str, base: Path, records: int, partitions: int, web_port: int
) -> dict[str, Any]:
    """Phase 0: pre-produce ``records`` raw records on :data:`TOPIC` (created by the caller
    with ``partitions`` partitions) and count them on each transport."""
    await _produce(bootstrap, TOPIC, records, partitions)
    rows = [
        await _count_once(bootstrap, base, transport, records, partitions, web_port)
        for transport in TRANSPORTS
    ]
    faust_row, eventpro_row = rows
    return {
        "records": records,
        "record_bytes": RECORD_BYTES,
        "partitions": partitions,
        "rows": rows,
        "cpu_ratio_faust_to_eventpro": round(
            faust_row["cpu_us_per_record"] / eventpro_row["cpu_us_per_record"], 2
        ),
    }


def render_floor(floor: dict[str, Any] | None, stage_cpu_us: float | None) -> list[str]:
    """The report's phase-0 section (Markdown lines); ``stage_cpu_us`` is phase 1's CPU per
    request, to set the floor beside."""
    lines = ["## 0. The Faust floor (a counting agent, no decisions)", ""]
    if floor is None:
        return [*lines, "not measured in this run (--skip floor)", ""]
    names = {"faust": "Faust's own (aiokafka driver)", "eventpro": "EventPro's"}
    lines += [
        "| transport | records/s | seconds | worker CPU s | CPU µs/record |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in floor["rows"]:
        lines.append(
            f"| {names[row['transport']]} | {row['records_per_s']:,} | {row['seconds']:.2f} | "
            f"{row['cpu_s']:.1f} | {row['cpu_us_per_record']:.1f} |"
        )
    eventpro = floor["rows"][-1]["cpu_us_per_record"]
    share = (
        f" The reservation stage (phase 1) spends {stage_cpu_us:,.0f} µs per request; this "
        f"floor is {100 * eventpro / stage_cpu_us:.0f}% of it."
        if stage_cpu_us
        else ""
    )
    lines += [
        "",
        f"{floor['records']:,} raw records of {floor['record_bytes']} bytes, "
        f"{floor['partitions']} partitions; one "
        "worker whose only agent takes them with `take_events(1000, 20 ms)` and counts them, "
        "on uvloop, timed by the worker from its first record to its last (CPU: user + system "
        "of all its threads). Faust's fetch loop hands each record to the streams through "
        "`wait_first` (four tasks and an `asyncio.wait`); EventPro's runs the hand-over inline "
        f"(`eventpro/inline.py`): **{floor['cpu_ratio_faust_to_eventpro']:.2f}x** less CPU per "
        f"record.{share}",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
