"""`eventpro events create` and `eventpro schemas export` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.cluster import WorkerFactory
from support.waiting import wait_for


def eventpro(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventpro", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def get_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


async def test_events_create_puts_an_event_on_sale(worker_factory: WorkerFactory) -> None:
    worker = worker_factory()
    env = {"EVENTPRO_TOPIC_PREFIX": worker_factory.prefix, "EVENTPRO_PARTITIONS": "4"}
    created = eventpro(
        "events",
        "create",
        "--name",
        "Opera",
        "--capacity",
        "120",
        "--price-cents",
        "7000",
        "--event-id",
        "opera-1",
        "--broker-url",
        worker_factory.broker,
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "opera-1"

    async def on_sale() -> dict[str, object] | None:
        return get_json(f"{worker.url}/api/v1/events/opera-1")

    event = await wait_for(on_sale, 30, "the event to be applied by its owner")
    assert (event["capacity"], event["price_cents"], event["available"]) == (120, 7000, 120)

    invalid = eventpro(
        "events", "create", "--name", "X", "--capacity", "0", "--price-cents", "1", env=env
    )
    assert invalid.returncode == 2
    assert "capacity" in invalid.stderr


def test_schemas_export_writes_one_schema_per_event_type(tmp_path: Path) -> None:
    result = eventpro("schemas", "export", str(tmp_path / "schemas"))
    assert result.returncode == 0, result.stderr
    written = {Path(line).name for line in result.stdout.split()}
    assert "TicketRequested.v2.schema.json" in written
    schema = json.loads((tmp_path / "schemas" / "TicketRequested.v2.schema.json").read_text())
    assert "quantity" in json.dumps(schema)
