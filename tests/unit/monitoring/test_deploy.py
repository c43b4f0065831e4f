"""The Grafana dashboard and Prometheus config refer to metrics the sensor really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import faust
from prometheus_client import generate_latest

from eventpro.monitoring.sensor import EventProSensor

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def test_dashboard_queries_only_known_metrics() -> None:
    app = faust.App("deploy-check", broker="kafka://127.0.0.1:1", store="memory://")
    sensor = EventProSensor(
        app, decision_topic="t", decision_agent="a", retry_topics=["r"], dlq_topic="d"
    )
    sensor.retries.labels("r").inc()
    sensor.records_processed.labels("a", "t").inc()
    sensor.records_sent.labels("t").inc()
    sensor.processing_seconds.labels("a").observe(0.01)
    sensor.http_seconds.labels("V", "GET", "200").observe(0.01)
    exposed = set(
        re.findall(r"^(eventpro_[a-z_]+)", generate_latest(sensor.registry).decode(), re.M)
    )
    exposed |= {"eventpro_consumer_lag", "eventpro_table_keys"}  # gauges with no samples here

    dashboard = json.loads((DEPLOY / "grafana" / "eventpro.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"eventpro_[a-z_]+", expr)}
    assert used, "the dashboard has no EventPro queries"
    assert used <= exposed, f"unknown metrics in the dashboard: {sorted(used - exposed)}"


def test_prometheus_scrapes_metrics_path() -> None:
    text = (DEPLOY / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in text
    assert "job_name: eventpro" in text
