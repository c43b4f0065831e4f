"""The Prometheus sensor: per-app registries, what the hooks count, lag and quantiles."""

from __future__ import annotations

import time
from types import SimpleNamespace

import faust
from faust.types import TP
from prometheus_client import generate_latest

from eventpro.monitoring.lag import partition_lag
from eventpro.monitoring.sensor import EventProSensor, count_sent, quantile


def make_sensor(app_id: str) -> EventProSensor:
    app = faust.App(app_id, broker="kafka://127.0.0.1:1", store="memory://")
    sensor = EventProSensor(
        app,
        decision_topic="ticket-requests",
        decision_agent="inventory",
        retry_topics=["retry-1"],
        dlq_topic="dlq",
    )
    app.sensors.add(sensor)
    return sensor


def value(sensor: EventProSensor, name: str, **labels: str) -> float | None:
    return sensor.registry.get_sample_value(name, labels or None)


def test_two_apps_in_one_process_do_not_collide() -> None:
    first, second = make_sensor("metrics-a"), make_sensor("metrics-b")
    first.dead_letters.inc()
    assert value(first, "eventpro_dead_letters_total") == 1
    assert value(second, "eventpro_dead_letters_total") == 0


def test_batches_sent_past_faust_count_like_single_sends() -> None:
    """eventpro.produce's partition batches bypass Faust's send hook; count_sent counts them."""
    sensor = make_sensor("metrics-batches")
    sensor.on_send_initiated(None, "reservations", None, 0, 0)  # type: ignore[arg-type]
    count_sent(sensor.app, "reservations", 40)
    count_sent(sensor.app, "dlq", 3)
    count_sent(sensor.app, "retry-1", 2)
    assert value(sensor, "eventpro_records_sent_total", topic="reservations") == 41
    assert value(sensor, "eventpro_records_sent_total", topic="dlq") == 3
    assert value(sensor, "eventpro_dead_letters_total") == 3
    assert value(sensor, "eventpro_retries_total", topic="retry-1") == 2


def test_hooks_count_records_latency_sends_and_http() -> None:
    sensor = make_sensor("metrics-hooks")
    stream = SimpleNamespace(prefix="inventory")
    tp = TP("ticket-requests", 0)
    event = SimpleNamespace(message=SimpleNamespace(timestamp=time.time() - 0.05))
    state = sensor.on_stream_event_in(tp, 1, stream, event)  # type: ignore[arg-type]
    sensor.on_stream_event_out(tp, 1, stream, event, state)  # type: ignore[arg-type]
    other = SimpleNamespace(prefix="analytics")
    sensor.on_stream_event_out(TP("orders", 2), 5, other, event, None)  # type: ignore[arg-type]
    for topic in ("reservations", "retry-1", "dlq"):
        sensor.on_send_initiated(None, topic, None, 0, 0)  # type: ignore[arg-type]
    view = type("SalesView", (), {})()
    request = SimpleNamespace(method="GET")
    start = sensor.on_web_request_start(None, request, view=view)  # type: ignore[arg-type]
    sensor.on_web_request_end(
        None,
        request,
        SimpleNamespace(status=200),
        start,
        view=view,  # type: ignore[arg-type]
    )

    assert (
        value(
            sensor, "eventpro_records_processed_total", agent="inventory", topic="ticket-requests"
        )
        == 1
    )
    assert value(sensor, "eventpro_records_processed_total", agent="analytics", topic="orders") == 1
    assert value(sensor, "eventpro_decision_latency_seconds_count") == 1
    decision_sum = value(sensor, "eventpro_decision_latency_seconds_sum")
    assert decision_sum is not None and 0.05 <= decision_sum < 5
    assert value(sensor, "eventpro_record_processing_seconds_count", agent="inventory") == 1
    assert value(sensor, "eventpro_retries_total", topic="retry-1") == 1
    assert value(sensor, "eventpro_dead_letters_total") == 1
    assert value(sensor, "eventpro_records_sent_total", topic="reservations") == 1
    assert (
        value(
            sensor,
            "eventpro_http_request_seconds_count",
            view="SalesView",
            method="GET",
            status="200",
        )
        == 1
    )
    quantiles = sensor.decision_quantiles()
    assert quantiles["samples"] == 1 and quantiles["p50_ms"] is not None

    text = generate_latest(sensor.registry).decode()
    for name in (
        "eventpro_records_processed_total",
        "eventpro_decision_latency_seconds_bucket",
        "eventpro_record_processing_seconds_bucket",
        "eventpro_retries_total",
        "eventpro_dead_letters_total",
        "eventpro_dlq_depth",
        "eventpro_http_request_seconds_bucket",
        "# TYPE eventpro_consumer_lag gauge",
        "# TYPE eventpro_table_keys gauge",
    ):
        assert name in text, name


def test_partition_lag() -> None:
    assert partition_lag(None, 3) is None
    assert partition_lag(10, None) == 10
    assert partition_lag(10, 4) == 6
    assert partition_lag(10, 10) == 0
    assert partition_lag(10, 12) == 0


def test_quantile_nearest_rank() -> None:
    assert quantile([], 0.5) is None
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) in (50.0, 51.0)
    assert quantile(values, 0.99) == 99.0
    assert quantile([3.0], 0.99) == 3.0


def test_creating_the_sensor_opens_no_table_store() -> None:
    app = faust.App("metrics-lazy", broker="kafka://127.0.0.1:1", store="memory://")
    table = app.Table("lazy", key_type=str, value_type=bytes, partitions=1)
    sensor = EventProSensor(
        app, decision_topic="t", decision_agent="a", retry_topics=[], dlq_topic="d"
    )
    assert sensor.registry is not None
    assert table._data is None  # the store is still created lazily, by the worker


async def test_table_keys_are_counted_for_the_scrape() -> None:
    sensor = make_sensor("metrics-table-keys")
    table = sensor.app.Table("sizes", key_type=str, value_type=bytes, partitions=1)
    table.data["a"] = b"1"
    table.data["b"] = b"2"
    assert value(sensor, "eventpro_table_keys", table="sizes") is None  # not counted yet
    assert await sensor.count_table_keys() == {"sizes": 2}
    assert value(sensor, "eventpro_table_keys", table="sizes") == 2
