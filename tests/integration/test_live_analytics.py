"""Live analytics, /metrics and the dashboard against a real worker on the embedded broker.

Reuses the worker subprocess fixture of ``test_ticketing``. The browser test drives Debian's
headless Chromium through chromedriver (selenium) and keeps a screenshot in test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import test_ticketing as ticketing
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from support.waiting import wait_for

worker = ticketing.worker
http = ticketing.http
Worker = ticketing.Worker

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1280,1000",
)
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text -> {(name, labels): value}."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        labels = frozenset(
            tuple(part.split("=", 1))
            for part in re.findall(r'[a-z_]+="[^"]*"', match["labels"] or "")
        )
        out[(match["name"], frozenset((k, v.strip('"')) for k, v in labels))] = float(
            match["value"]
        )
    return out


def total(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= set(ls))


async def scrape(
    http: aiohttp.ClientSession, base: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        return parse_metrics(await response.text())


async def create_event(http: aiohttp.ClientSession, base: str, capacity: int) -> str:
    ready = await wait_for(lambda: ticketing._get_json(http, f"{base}/ready"), 60, "readiness")
    assert ready["assigned_partitions"] > 0
    async with http.post(
        f"{base}/api/v1/events",
        json={"name": "Live", "capacity": capacity, "price_cents": 2_500, "max_per_user": 4},
    ) as response:
        assert response.status == 201, await response.text()
        event_id: str = (await response.json())["event_id"]
    await wait_for(
        lambda: ticketing._get_json(http, f"{base}/api/v1/events/{event_id}"), 30, "event"
    )
    return event_id


async def send_requests(broker: str, worker: Worker, event_id: str, first: int, count: int) -> None:
    requests = [ticketing._request(event_id, i) for i in range(first, first + count)]
    await ticketing._produce(broker, f"{worker.prefix}ticket-requests", requests)


async def test_metrics_move_and_lag_returns_to_zero(
    worker: Worker, shared_broker: str, http: aiohttp.ClientSession
) -> None:
    event_id = await create_event(http, worker.url, capacity=100)
    before = await scrape(http, worker.url)
    requests_topic = f"{worker.prefix}ticket-requests"
    base_decided = total(before, "eventpro_records_processed_total", topic=requests_topic)

    await send_requests(shared_broker, worker, event_id, 0, 150)

    async def moved() -> dict[Any, float] | None:
        now = await scrape(http, worker.url)
        decided = total(now, "eventpro_records_processed_total", topic=requests_topic)
        # The analytics agent reads the outcomes a moment after the inventory decided them.
        counted = total(now, "eventpro_records_processed_total", agent="eventpro.agents.analytics")
        return now if decided >= base_decided + 150 and counted > 0 else None

    during = await wait_for(moved, 60, "the inventory and analytics agents to count requests")
    assert total(during, "eventpro_decision_latency_seconds_count") >= 150
    assert total(during, "eventpro_records_sent_total", topic=f"{worker.prefix}reservations") >= 150
    assert total(during, "eventpro_table_keys", table="sales-totals") >= 1
    assert total(during, "eventpro_http_request_seconds_count", view="MetricsView") >= 1

    async def lag_zero() -> bool:
        now = await scrape(http, worker.url)
        lags = [v for (n, _), v in now.items() if n == "eventpro_consumer_lag"]
        return bool(lags) and sum(lags) == 0

    await wait_for(lag_zero, 60, "consumer lag to return to zero")

    async def sales_settled() -> list[dict[str, Any]] | None:
        rows = await ticketing._get_json(
            http, f"{worker.url}/api/v1/events/{event_id}/sales?window=10"
        )
        inventory = await ticketing._get_json(http, f"{worker.url}/api/v1/events/{event_id}")
        if not rows or inventory is None:
            return None
        sold = sum(r["sold"] for r in rows)
        requests = sum(r["requests"] for r in rows)
        return rows if requests == 150 and sold == inventory["sold"] > 0 else None

    rows = await wait_for(sales_settled, 60, "sales windows to match the inventory")
    assert [r["window_start"] for r in rows] == sorted(r["window_start"] for r in rows)
    assert sum(r["rejected"] for r in rows) == 50
    assert sum(r["revenue_cents"] for r in rows) == 2_500 * sum(r["sold"] for r in rows)
    assert set(rows[0]) >= {
        "window_start",
        "window_end",
        "requests",
        "sold",
        "rejected",
        "revenue_cents",
    }

    async with http.get(f"{worker.url}/api/v1/events/{event_id}/sales?window=7") as response:
        assert response.status == 400
        body = await response.json()
        assert "one of 10, 60" in body["error"]

    async def stats_caught_up() -> dict[str, Any] | None:
        # Hold-expiry ticks arrive every second and are committed every few: the lag is
        # one tick per partition between two commits, so wait for a commit.
        stats = await ticketing._get_json(http, f"{worker.url}/api/v1/stats")
        return stats if stats is not None and stats["consumer_lag"] == 0 else None

    stats = await wait_for(stats_caught_up, 30, "the stats' consumer lag to return to zero")
    assert not stats["partial"]
    assert stats["top_events"][0]["event_id"] == event_id
    assert stats["totals"]["requests"] == 150
    assert stats["decision_latency_ms"]["p99"] is not None
    assert worker.proc.poll() is None, worker.log_tail()


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def number(driver: webdriver.Chrome, element_id: str) -> int:
    text = driver.find_element(By.ID, element_id).text.replace(",", "")
    return int(text) if text.isdigit() else -1


async def test_dashboard_updates_without_reload(
    worker: Worker, shared_broker: str, http: aiohttp.ClientSession, artifacts_dir: Path
) -> None:
    event_id = await create_event(http, worker.url, capacity=500)
    await send_requests(shared_broker, worker, event_id, 0, 20)
    driver = chromium()
    try:
        driver.get(f"{worker.url}/dashboard")
        assert "EventPro" in driver.title
        driver.execute_script("window.__loadedOnce = 'yes';")
        wait = WebDriverWait(driver, 60, poll_frequency=0.2)
        wait.until(
            lambda d: d.find_element(By.ID, "event-select").get_attribute("value") == event_id
        )
        wait.until(lambda d: number(d, "seats-sold") > 0 and number(d, "sold-total") > 0)
        chart = driver.find_element(By.ID, "sales-chart")
        wait.until(lambda d: int(chart.get_attribute("data-sold") or 0) > 0)
        first_sold = number(driver, "sold-total")
        first_chart = int(chart.get_attribute("data-sold") or 0)

        await send_requests(shared_broker, worker, event_id, 20, 60)

        wait.until(lambda d: number(d, "sold-total") > first_sold)
        wait.until(lambda d: int(chart.get_attribute("data-sold") or 0) > first_chart)
        wait.until(lambda d: number(d, "sold-total") == 80)
        assert driver.execute_script("return window.__loadedOnce;") == "yes"  # no reload
        assert len(driver.find_elements(By.CSS_SELECTOR, "#sales-chart rect.bar-sold")) >= 1
        assert driver.find_element(By.ID, "latency-p99").text != "\u2013"  # the placeholder dash
        assert driver.find_element(By.ID, "consumer-lag").text.isdigit()
        assert "error" not in (driver.find_element(By.ID, "status").get_attribute("class") or "")
        driver.save_screenshot(str(artifacts_dir / "dashboard.png"))
    finally:
        driver.quit()
    assert worker.proc.poll() is None, worker.log_tail()
