"""The pipeline benchmark runs end to end at the tiny scale, and every phase keeps the invariants.

Not a timed test: it proves the harness works (broker, inventory-only EventPro workers per
record and batched, a full-saga worker, naive baseline, load generator, report files),
whatever the figures are, the Faust floor's counting workers on both transports, and the soak
phase's samples of memory and table keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.pipeline import SCALES, main
from bench.soak import SAMPLES


def test_tiny_benchmark_writes_reports_and_invariants_hold(tmp_path: Path) -> None:
    scale = SCALES["tiny"]
    main(["--scale", "tiny", "--out", str(tmp_path)])

    data = json.loads((tmp_path / "pipeline-tiny.json").read_text())
    results = data["results"]
    assert results["invariants_ok"] is True
    assert results["eventpro_batch_size"] > 1
    for stage in ("reservation_stage_per_record", "reservation_stage", "naive_baseline"):
        assert results[stage]["decided"] == scale.requests
        assert results[stage]["requests_per_s"] > 0
        assert results[stage]["peak_rss_mb"] > 0
        assert results[stage]["invariants"]["no_oversell"] is True
        assert results[stage]["invariants"]["one_outcome_per_request"] is True
    # phase 1 ran the inventory agent alone (as the baseline decides alone); phase 2 all agents
    assert results["reservation_stage"]["agents"] == "inventory"
    assert results["reservation_stage"]["saga_records"] == 0
    assert results["reservation_stage_per_record"]["saga_records"] == 0
    with_saga = results["reservation_stage_with_saga"]
    assert with_saga["decided"] == scale.requests
    assert with_saga["invariants"]["ok"] is True
    assert with_saga["saga_records"] > 0
    assert results["full_saga"]["available"] is True
    assert results["full_saga"]["confirmed"] > 0
    assert results["ratio_eventpro_to_baseline"] > 0
    scaled = results["scaled_saga"]
    assert scaled["workers"] == 2 and scaled["decided"] == scale.requests
    assert scaled["saga"]["available"] is True and scaled["saga"]["confirmed"] > 0
    assert scaled["saga"]["invariants"]["ok"] is True
    assert len(scaled["peak_rss_mb"]) == 2 and all(rss > 0 for rss in scaled["peak_rss_mb"])
    scrape = results["metrics_scrape"]
    assert scrape["scrapes"] == 10 and 0 < scrape["median_ms"] <= scrape["max_ms"]
    # request-status alone holds a key per request (the other tables more)
    assert scrape["table_keys"] > scale.requests
    assert scrape["health_answers"] > 0 and scrape["health_max_ms"] > 0
    assert results["ratio_batched_to_per_record"] > 0
    assert [entry["offered_per_s"] for entry in results["latency"]] == list(scale.latency_rates)
    assert all(entry["invariants"]["ok"] for entry in results["latency"])
    # each rate starts on a worker with no lag left (a finite wait, not the timeout's nan)
    assert all(0 <= entry["settle_s"] < 300 for entry in results["latency"])
    # ... and is measured until its own requests are drained: both processes did work for them
    assert all(0 <= entry["drained_s"] < 300 for entry in results["latency"])
    assert all(entry["worker_cpu_us_per_request"] > 0 for entry in results["latency"])
    assert all(entry["broker_cpu_us_per_request"] > 0 for entry in results["latency"])
    soak = results["soak"]
    assert soak["invariants"]["ok"] is True
    assert soak["invariants"]["decided"] == soak["requests"]
    assert len(soak["samples"]) > SAMPLES // 2
    assert all(sample["rss_mb"] > 0 for sample in soak["samples"])
    # every request leaves a status (an expiring key) and the sold seats lasting ones
    assert soak["samples"][-1]["expiring_keys"] >= soak["requests"]
    assert soak["samples"][-1]["lasting_keys"] > 0
    assert soak["stores"] == 4 * len(soak["samples"][-1]["table_keys"])
    assert data["machine"]["versions"]["faust-streaming"]
    floor = results["faust_floor"]
    assert [row["transport"] for row in floor["rows"]] == ["faust", "eventpro"]
    for row in floor["rows"]:  # each worker counted every record, then timed itself
        assert row["records"] == scale.requests
        assert row["seconds"] > 0 and row["cpu_us_per_record"] > 0
    assert floor["cpu_ratio_faust_to_eventpro"] > 0
    assert floor["partitions"] == 4

    markdown = (tmp_path / "pipeline-tiny.md").read_text()
    assert "## 0. The Faust floor" in markdown
    assert "| Faust's own (aiokafka driver) |" in markdown and "| EventPro's |" in markdown
    assert f"{scale.requests:,} raw records of 250 bytes, 4 partitions;" in markdown
    assert "## 1. Reservation stage" in markdown
    assert "| EventPro, per record (batch 1, before) |" in markdown
    assert f"| EventPro, batched ({results['eventpro_batch_size']}, after) |" in markdown
    assert "batched / per record:" in markdown
    assert data["command"] == f"python -m bench.pipeline --scale tiny --out {tmp_path}"
    assert "| naive Faust baseline |" in markdown
    assert "| EventPro, batched, saga running beside it |" in markdown
    assert "A Prometheus scrape of this worker once idle" in markdown
    assert "## 2b. Full saga, scaled out" in markdown
    assert "| 2 | 0 |" in markdown
    assert "| drained after s | worker CPU µs/request | broker CPU µs/request |" in markdown
    first = results["latency"][0]
    assert f"| {first['worker_cpu_us_per_request']:,.0f} | " in markdown
    assert "## 5. Memory and table keys over a long run" in markdown
