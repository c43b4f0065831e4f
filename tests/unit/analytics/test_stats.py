"""Merging the workers' parts of ``/api/v1/stats``."""

from __future__ import annotations

from eventpro.analytics.facts import WindowCounts
from eventpro.analytics.stats import merge_stats

NOW = 1_700_000_070.0


def part(worker: str, events: dict[str, tuple[int, int]], lag: int, samples: list[float]) -> dict:
    return {
        "events": [
            {
                "event_id": event_id,
                "totals": WindowCounts(requests=req, sold=sold).to_dict(),
                "current": WindowCounts(requests=req, sold=sold).to_dict(),
                "watermark": None,
            }
            for event_id, (sold, req) in events.items()
        ],
        "operations": {
            "worker": worker,
            "lag_total": lag,
            "dlq_depth": 2,
            "decision_latencies_ms": samples,
        },
    }


def test_merge_sums_totals_ranks_events_and_pools_latencies() -> None:
    merged = merge_stats(
        [
            part("w1", {"a": (5, 9), "b": (7, 7)}, lag=3, samples=[1.0, 2.0]),
            part("w2", {"c": (7, 10)}, lag=4, samples=[3.0, 100.0]),
        ],
        60,
        NOW,
    )
    assert merged["totals"]["sold"] == 19 and merged["totals"]["requests"] == 26
    assert [e["event_id"] for e in merged["top_events"]] == ["c", "b", "a"]  # sold, then requests
    assert merged["events"] == ["a", "b", "c"]
    assert merged["consumer_lag"] == 7
    assert merged["dlq_depth"] == 2  # the same topic seen by both workers: not summed
    assert merged["decision_latency_ms"]["samples"] == 4
    assert merged["decision_latency_ms"]["p99"] == 100.0
    assert (merged["window"], merged["window_start"]) == (60, "2023-11-14T22:14:00.000Z")
    assert [w["worker"] for w in merged["workers"]] == ["w1", "w2"]


def test_merge_of_nothing_is_empty() -> None:
    merged = merge_stats([], 10, NOW)
    assert merged["event_count"] == 0 and merged["top_events"] == []
    assert merged["decision_latency_ms"]["p50"] is None and merged["dlq_depth"] is None
