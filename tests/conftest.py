"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import WorkerFactory

from eventpro.broker.process import BrokerProcess

EXTERNAL_BROKER_ENV = "EVENTPRO_TEST_BROKER"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files worth keeping (screenshots, reports): test-artifacts/."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a broker shared by the session's tests (use unique topic names).

    With ``EVENTPRO_TEST_BROKER=host:port`` the tests run against that Kafka instead of the
    embedded broker.
    """
    external = os.environ.get(EXTERNAL_BROKER_ENV)
    if external:
        yield external
        return
    base = tmp_path_factory.mktemp("shared-broker")
    proc = BrokerProcess(
        base / "data",
        log_path=base / "broker.log",
        extra_args=("--initial-rebalance-delay-ms", "300"),
    )
    proc.start()
    try:
        yield proc.bootstrap
    finally:
        proc.stop()


@pytest.fixture()
def broker_process(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker process of this test's own, which the test may kill and restart."""
    proc = BrokerProcess(
        tmp_path / "broker-data",
        log_path=tmp_path / "broker.log",
        extra_args=("--initial-rebalance-delay-ms", "300"),
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture()
def worker_factory(shared_broker: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Starts EventPro workers of this test's own app on the shared broker; stops them after."""
    factory = WorkerFactory(shared_broker, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
