"""Faust with processing_guarantee="exactly_once" on the embedded broker: a worker killed with
SIGKILL mid-stream and restarted leaves exact table counts and an output topic that a
read_committed consumer sees without duplicates or output of the aborted transaction."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from support.cluster import free_port

from eventpro.broker.process import BrokerProcess

APP = Path(__file__).with_name("faust_eos_app.py")
SOURCE, OUTPUT = "eos-numbers", "eos-outputs"
PARTITIONS = 4
RECORDS = 2000
KEYS = 23


class EosWorker:
    """The exactly_once counter app in a subprocess."""

    def __init__(self, bootstrap: str, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "COUNTER_BROKER": bootstrap,
            "COUNTER_PORT": str(self.port),
            "COUNTER_DATA_DIR": str(data_dir),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(APP)], env=self.env, stdout=log, stderr=log, cwd=APP.parent
            )

    def kill(self) -> None:
        """SIGKILL: also used at teardown, since faust-streaming 0.15.3 in exactly_once mode
        fails its own SIGTERM shutdown (IllegalOperation 'Not in the middle of a transaction'
        while committing after it stopped its transactions) and then hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def state(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/counts", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def wait_for(
        self, predicate: Callable[[dict[str, object]], bool], timeout: float, what: str
    ) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}: {self.tail()}")
            last = self.state()
            if last is not None and predicate(last):
                return last
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; last state {last}; log: {self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture()
def worker(broker_process: BrokerProcess, tmp_path: Path) -> Iterator[EosWorker]:
    admin = AdminClient({"bootstrap.servers": broker_process.bootstrap})
    futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (SOURCE, OUTPUT)])
    for future in futures.values():
        future.result(timeout=20)
    eos = EosWorker(broker_process.bootstrap, tmp_path / "worker", tmp_path / "worker.log")
    try:
        yield eos
    finally:
        eos.kill()


async def feed(bootstrap: str, keys: list[str]) -> None:
    """A plain (non-transactional) external producer, as the notes' test pitfall requires."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    try:
        futures = [
            await producer.send(SOURCE, json.dumps(str(seq)).encode(), key=json.dumps(k).encode())
            for seq, k in enumerate(keys)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def offsets(bootstrap: str, isolation_level: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level)
    await consumer.start()
    try:
        tps = [TopicPartition(OUTPUT, p) for p in range(PARTITIONS)]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def open_output_transaction(bootstrap: str) -> bool:
    """Some output is written but not yet committed (LSO < high watermark), and enough of it."""
    high = await offsets(bootstrap, "read_uncommitted")
    stable = await offsets(bootstrap, "read_committed")
    return sum(high.values()) > 200 and any(stable[p] < high[p] for p in high)


async def read_output(bootstrap: str, isolation_level: str) -> list[str]:
    """Every output value visible at ``isolation_level``, read up to the high watermarks."""
    ends = await offsets(bootstrap, "read_uncommitted")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation_level, auto_offset_reset="earliest"
    )
    await consumer.start()
    tps = [TopicPartition(OUTPUT, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    values: list[str] = []
    deadline = time.monotonic() + 20
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            values.extend(json.loads(m.value) for msgs in batch.values() for m in msgs)
            positions = {tp.partition: await consumer.position(tp) for tp in tps}
            if positions == ends:
                return values
            if time.monotonic() > deadline:
                pytest.fail(f"{isolation_level} reader stuck at {positions}, end is {ends}")
    finally:
        await consumer.stop()


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]], within_s: float, what: str
) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_worker_killed_mid_stream_exactly_once(
    worker: EosWorker, broker_process: BrokerProcess
) -> None:
    bootstrap = broker_process.bootstrap
    worker.start()
    worker.wait_for(lambda s: bool(s["ready"]), 60, "worker ready")
    keys = [f"k{i % KEYS}" for i in range(RECORDS)]
    expected = dict(Counter(keys))
    asyncio.run(feed(bootstrap, keys))

    asyncio.run(
        wait_until_async(lambda: open_output_transaction(bootstrap), 30, "output in flight")
    )
    worker.kill()
    uncommitted_at_kill = asyncio.run(offsets(bootstrap, "read_uncommitted"))

    worker.start()
    state = worker.wait_for(
        lambda s: bool(s["ready"]) and sum(s["counts"].values()) >= RECORDS,  # type: ignore[union-attr]
        60,
        "all records counted after the restart",
    )
    assert state["counts"] == expected

    async def all_committed() -> bool:
        return await offsets(bootstrap, "read_committed") == await offsets(
            bootstrap, "read_uncommitted"
        )

    asyncio.run(wait_until_async(all_committed, 30, "output transactions committed"))
    committed = asyncio.run(read_output(bootstrap, "read_committed"))
    everything = asyncio.run(read_output(bootstrap, "read_uncommitted"))

    seqs = [int(v.split(":")[0]) for v in committed]
    assert sorted(seqs) == list(range(RECORDS)), "duplicate or missing output records"
    per_key: dict[str, list[int]] = defaultdict(list)
    for value in committed:
        seq, count = value.split(":")
        per_key[keys[int(seq)]].append(int(count))
    assert {k: sorted(v) for k, v in per_key.items()} == {
        k: list(range(1, n + 1)) for k, n in expected.items()
    }
    # the killed worker's open transaction held output that read_committed never showed
    assert len(everything) > len(committed)
    assert sum(uncommitted_at_kill.values()) > 0
