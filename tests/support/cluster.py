"""EventPro worker processes for integration tests: one app id and topic prefix per test."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from eventpro.processes import WorkerProcess

__all__ = ("WorkerFactory", "free_port", "group_lag")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerFactory:
    """Starts workers of one test's app (own app id, topic prefix, data dirs, free ports).

    Workers started by one factory form one consumer group and share partitions.
    """

    def __init__(self, broker: str, base_dir: Path, *, partitions: int = 4) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.broker = broker
        self.base_dir = base_dir
        self.app_id = f"eventpro-it-{suffix}"
        self.prefix = f"it-{suffix}-"
        self.env = {
            "EVENTPRO_APP_ID": self.app_id,
            "EVENTPRO_TOPIC_PREFIX": self.prefix,
            "EVENTPRO_PARTITIONS": str(partitions),
            "EVENTPRO_LOG_LEVEL": "WARNING",
        }
        self.workers: list[WorkerProcess] = []

    def topic(self, logical: str) -> str:
        """The full name of one of EventPro's topics for this test's app."""
        return f"{self.prefix}{logical}"

    def __call__(self, timeout: float = 90.0, **env: str) -> WorkerProcess:
        """Start one more worker (``env`` adds EVENTPRO_* variables) and wait until ready."""
        index = len(self.workers)
        worker = WorkerProcess(
            broker=self.broker,
            web_port=free_port(),
            data_dir=self.base_dir / f"worker-{index}",
            log_path=self.base_dir / f"worker-{index}.log",
            env={**self.env, **env},
        )
        self.workers.append(worker)
        worker.start(timeout=timeout)
        return worker

    def stop_all(self) -> None:
        for worker in reversed(self.workers):
            worker.stop()


async def group_lag(bootstrap: str, group: str, topics: list[str], partitions: int) -> int:
    """Records of ``topics`` not yet committed by consumer group ``group``."""
    tps = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        lag += max(0, ends[tp] - done)
    return lag
