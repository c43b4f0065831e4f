"""The broker and worker processes of one chaos run: own data dirs, free ports, fast timers."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from eventpro.broker.process import BrokerProcess
from eventpro.chaos.spec import ChaosSpec
from eventpro.processes import WorkerProcess

__all__ = ("ChaosCluster", "free_port")

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ChaosCluster:
    """One broker and the workers of one app (one consumer group) under ``base_dir``."""

    spec: ChaosSpec
    base_dir: Path
    broker: BrokerProcess = field(init=False)
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.broker = BrokerProcess(
            self.base_dir / "broker",
            log_path=self.base_dir / "broker.log",
            extra_args=("--initial-rebalance-delay-ms", "300"),
            log_level="WARNING",
        )

    @property
    def prefix(self) -> str:
        return f"{self.spec.run_id}-"

    @property
    def app_id(self) -> str:
        return f"eventpro-{self.spec.run_id}"

    def notifications_log(self, index: int) -> Path:
        return self.base_dir / f"worker-{index}-notifications.jsonl"

    def worker_env(self, index: int) -> dict[str, str]:
        """Short hold TTL and retry delays keep a run fast; the gateway is seeded."""
        spec = self.spec
        return {
            "EVENTPRO_APP_ID": self.app_id,
            "EVENTPRO_TOPIC_PREFIX": self.prefix,
            "EVENTPRO_PARTITIONS": str(spec.partitions),
            "EVENTPRO_LOG_LEVEL": spec.worker_log_level,
            "EVENTPRO_HOLD_TTL_SECONDS": str(spec.hold_ttl_seconds),
            "EVENTPRO_EXPIRY_TICK_SECONDS": "0.5",
            "EVENTPRO_RETRY_DELAYS_MS": "[200,500,1000]",
            "EVENTPRO_PAYMENT_TIMEOUT_SECONDS": "1",
            "EVENTPRO_GATEWAY_LATENCY_MS_MIN": "1",
            "EVENTPRO_GATEWAY_LATENCY_MS_MAX": "10",
            "EVENTPRO_GATEWAY_DECLINE_RATE": "0.05",
            "EVENTPRO_GATEWAY_TRANSIENT_ERROR_RATE": "0.05",
            "EVENTPRO_GATEWAY_TIMEOUT_RATE": "0.0",
            "EVENTPRO_GATEWAY_SEED": str(spec.seed * 100 + index),
            "EVENTPRO_NOTIFICATIONS_LOG": str(self.notifications_log(index)),
        }

    def start_broker(self) -> float:
        """Start the broker; returns seconds until it was ready."""
        began = time.monotonic()
        self.broker.start()
        return time.monotonic() - began

    def add_worker(self, timeout: float = 120.0) -> tuple[WorkerProcess, float]:
        """Start one more worker; returns it and the seconds until its readiness line."""
        index = len(self.workers)
        worker = WorkerProcess(
            broker=self.broker.bootstrap,
            web_port=free_port(),
            data_dir=self.base_dir / f"worker-{index}",
            log_path=self.base_dir / f"worker-{index}.log",
            env=self.worker_env(index),
        )
        self.workers.append(worker)
        began = time.monotonic()
        worker.start(timeout=timeout)
        return worker, time.monotonic() - began

    def restart_worker(self, index: int, timeout: float = 120.0) -> float:
        """Start a stopped worker again (same port and data dir); seconds until ready."""
        began = time.monotonic()
        self.workers[index].start(timeout=timeout)
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop every worker (SIGKILL after a timeout), then the broker."""
        for worker in reversed(self.workers):
            worker.stop(timeout=20)
        self.broker.stop(timeout=20)
