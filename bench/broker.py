"""Embedded broker throughput: produce then consume N records of ~S bytes with aiokafka.

    python -m bench.broker [--records 1000000] [--size 200] [--partitions 4] [--out bench/results]

Starts a broker process on a temporary data dir, produces with aiokafka's batch API (the way a
high-volume producer uses it), consumes everything back with one consumer, and writes
``broker.md`` and ``broker.json`` with records/s, MB/s each way and the broker's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tqdm import tqdm

from eventpro.broker.process import BrokerProcess

TOPIC = "bench-broker"
TOPIC_SEND = "bench-broker-send"


@dataclass(frozen=True)
class PhaseResult:
    records: int
    seconds: float
    records_per_s: float
    mb_per_s: float
    broker_cpu_s: float


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def produce(bootstrap: str, records: int, size: int, partitions: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    payload = os.urandom(size // 2).hex().encode()[:size]
    pending: list[asyncio.Future[object]] = []
    try:
        with tqdm(total=records, desc="produce", unit="rec", disable=None) as bar:
            sent = 0
            partition = 0
            while sent < records:
                batch = producer.create_batch()
                count = 0
                while (
                    sent + count < records
                    and batch.append(key=None, value=payload, timestamp=None) is not None
                ):
                    count += 1
                batch.close()
                pending.append(await producer.send_batch(batch, TOPIC, partition=partition))
                partition = (partition + 1) % partitions
                sent += count
                bar.update(count)
                if len(pending) >= 64:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def produce_per_record(bootstrap: str, records: int, size: int, partitions: int) -> None:
    """The plain ``send()`` path, one call per record, as most applications use it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    payload = os.urandom(size // 2).hex().encode()[:size]
    try:
        with tqdm(total=records, desc="produce (send)", unit="rec", disable=None) as bar:
            pending = []
            for i in range(records):
                pending.append(await producer.send(TOPIC_SEND, payload, partition=i % partitions))
                if len(pending) >= 10_000:
                    await asyncio.gather(*pending)
                    bar.update(len(pending))
                    pending.clear()
            await asyncio.gather(*pending)
            bar.update(len(pending))
    finally:
        await producer.stop()


async def consume(bootstrap: str, records: int, partitions: int) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        max_poll_records=100_000,
    )
    await consumer.start()
    consumer.assign([TopicPartition(TOPIC, p) for p in range(partitions)])
    seen = 0
    try:
        with tqdm(total=records, desc="consume", unit="rec", disable=None) as bar:
            while seen < records:
                batches = await consumer.getmany(timeout_ms=1000)
                got = sum(len(v) for v in batches.values())
                seen += got
                bar.update(got)
    finally:
        await consumer.stop()
    return seen


async def run(
    records: int, size: int, partitions: int, broker: BrokerProcess
) -> dict[str, PhaseResult]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, partitions, 1), NewTopic(TOPIC_SEND, partitions, 1)]
        )
    finally:
        await admin.close()
    assert broker.pid is not None
    results: dict[str, PhaseResult] = {}
    mb = records * size / 1e6

    cpu0, t0 = process_cpu_seconds(broker.pid), time.perf_counter()
    await produce(broker.bootstrap, records, size, partitions)
    cpu1, t1 = process_cpu_seconds(broker.pid), time.perf_counter()
    results["produce"] = PhaseResult(
        records, t1 - t0, records / (t1 - t0), mb / (t1 - t0), cpu1 - cpu0
    )

    seen = await consume(broker.bootstrap, records, partitions)
    cpu2, t2 = process_cpu_seconds(broker.pid), time.perf_counter()
    if seen != records:
        raise SystemExit(f"consumed {seen} records, expected {records}")
    results["consume"] = PhaseResult(
        records, t2 - t1, records / (t2 - t1), mb / (t2 - t1), cpu2 - cpu1
    )

    send_records = max(records // 5, 1)
    await produce_per_record(broker.bootstrap, send_records, size, partitions)
    cpu3, t3 = process_cpu_seconds(broker.pid), time.perf_counter()
    send_mb = send_records * size / 1e6
    results["produce (send per record)"] = PhaseResult(
        send_records, t3 - t2, send_records / (t3 - t2), send_mb / (t3 - t2), cpu3 - cpu2
    )
    return results


def machine_facts() -> dict[str, object]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "aiokafka": aiokafka.__version__,
    }


def write_report(out: Path, args: argparse.Namespace, results: dict[str, PhaseResult]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    data = {
        "benchmark": "broker",
        "command": "python -m bench.broker " + " ".join(sys.argv[1:]),
        "records": args.records,
        "record_bytes": args.size,
        "partitions": args.partitions,
        "machine": facts,
        "results": {k: asdict(v) for k, v in results.items()},
    }
    (out / "broker.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Embedded broker throughput",
        "",
        f"Command: `{data['command']}`  ",
        f"{args.records:,} records of {args.size} bytes, {args.partitions} partitions, "
        "aiokafka producer (acks=all; batch API, then plain send() for a fifth as many records) "
        "and one consumer; the broker runs in its own process.",
        "",
        "| phase | records/s | MB/s | seconds | broker CPU s |",
        "|---|---:|---:|---:|---:|",
    ]
    for phase, r in results.items():
        lines.append(
            f"| {phase} | {r.records_per_s:,.0f} | {r.mb_per_s:,.1f} | {r.seconds:.2f} | "
            f"{r.broker_cpu_s:.2f} |"
        )
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), ""]
    (out / "broker.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    if args.records <= 0 or args.size <= 0 or args.partitions <= 0:
        parser.error("--records, --size and --partitions must be positive")
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        broker = BrokerProcess(
            Path(tmp) / "data", log_path=Path(tmp) / "broker.log", log_level="WARNING"
        )
        with broker:
            results = asyncio.run(run(args.records, args.size, args.partitions, broker))
    write_report(args.out, args, results)


if __name__ == "__main__":
    main()
