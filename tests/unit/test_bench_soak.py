"""The soak phase's readings and report: keys per table from /metrics, expiring vs lasting
tables, resident memory, and the Markdown section (bench/soak.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench.soak import (
    EXPIRING_TABLES,
    SoakSample,
    render_soak,
    resident_mb,
    table_keys,
)

METRICS = """\
# HELP eventpro_table_keys Keys stored by this worker, per table
# TYPE eventpro_table_keys gauge
eventpro_table_keys{table="request-status"} 1200.0
eventpro_table_keys{table="holds"} 300.0
eventpro_table_keys{table="sales-10s"} 40.0
eventpro_records_processed_total{agent="inventory",topic="ticket-requests"} 9.0
"""


def test_table_keys_reads_each_table_and_nothing_else() -> None:
    assert table_keys(METRICS) == {"request-status": 1200, "holds": 300, "sales-10s": 40}


def test_a_sample_splits_expiring_tables_from_lasting_ones() -> None:
    sample = SoakSample(1.0, 90.0, {"request-status": 1200, "holds": 300, "sales-10s": 40})
    assert sample.expiring_keys == 1240
    assert sample.lasting_keys == 300
    assert "holds" not in EXPIRING_TABLES


def test_resident_memory_of_this_process() -> None:
    assert 1.0 < resident_mb(os.getpid()) < 24 * 1024


def _soak(samples: list[tuple[float, float, int]], ok: bool = True) -> dict[str, Any]:
    rows = []
    for seconds, rss, status_keys in samples:
        sample = SoakSample(seconds, rss, {"request-status": status_keys, "holds": 7})
        rows.append(
            {
                "seconds": seconds,
                "rss_mb": rss,
                "table_keys": sample.table_keys,
                "expiring_keys": sample.expiring_keys,
                "lasting_keys": sample.lasting_keys,
            }
        )
    return {
        "seconds": 30.0,
        "offered_per_s": 250,
        "requests": 7500,
        "events": 20,
        "capacity": 125,
        "env": {"EVENTPRO_DEDUP_TTL_SECONDS": "30"},
        "stores": 36,
        "rocksdb_ceiling_mb": 360.0,
        "achieved_send_per_s": 249.0,
        "p50_ms": 20.0,
        "p99_ms": 80.0,
        "timed_out": False,
        "samples": rows,
        "invariants": {"ok": ok},
    }


def test_the_report_gives_the_second_half_from_the_middle_and_last_samples() -> None:
    text = "\n".join(render_soak(_soak([(0, 80.0, 0), (10, 120.0, 900), (20, 130.0, 1500)])))
    assert "RSS 120.0 -> 130.0 MiB (+10.0; the 36 RocksDB stores share one read cache " in text
    assert "that holds their memtables too, at most 360 MiB)" in text
    assert "expiring keys 900 -> 1,500 (peak 1,500)" in text
    assert "Decision p50 20.0 ms, p99 80.0 ms" in text
    assert "invariants ok" in text
    assert "| 10.0 | 120.0 | 900 | 7 | 900 | 0 | 0 | 0 |" in text
    assert "`EVENTPRO_DEDUP_TTL_SECONDS=30`" in text


@pytest.mark.parametrize("ok, word", [(True, "ok"), (False, "VIOLATED")])
def test_the_report_says_whether_the_invariants_held(ok: bool, word: str) -> None:
    text = "\n".join(render_soak(_soak([(0, 80.0, 0), (10, 90.0, 5)], ok=ok)))
    assert f"invariants {word}." in text


def test_a_skipped_soak_says_so() -> None:
    assert render_soak(None)[-1] == "not measured in this run (--skip soak)"
