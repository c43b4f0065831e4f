"""The worker runs on the event loop its settings name (uvloop by default), with its garbage
collector tuned."""

from __future__ import annotations

from support.cluster import WorkerFactory


def test_a_worker_runs_on_uvloop_by_default(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(EVENTPRO_LOG_LEVEL="INFO")
    log = worker.log_path.read_text(errors="replace")
    assert "worker ready at" in log
    assert "on uvloop.Loop" in log, worker.log_tail()
    assert "gc thresholds (50000, 20, 100)" in log, worker.log_tail()


def test_the_young_gc_threshold_is_a_setting(worker_factory: WorkerFactory) -> None:
    worker = worker_factory(EVENTPRO_LOG_LEVEL="INFO", EVENTPRO_GC_YOUNG_THRESHOLD="700")
    assert "gc thresholds (700, 20, 100)" in worker.log_path.read_text(errors="replace")
