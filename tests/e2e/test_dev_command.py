"""`eventpro dev` as a user runs it: starts everything, serves the API, stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support.cluster import free_port


def http_json(method: str, url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and marker.encode() not in seen:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def wait_for(probe: object, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_dev_serves_the_api_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    web_port, broker_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventpro",
            "dev",
            "--data-dir",
            str(tmp_path / "data"),
            "--web-port",
            str(web_port),
            "--broker-port",
            str(broker_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out = read_until(proc, "Ctrl-C stops everything", 120)
        assert f"http://127.0.0.1:{web_port}/dashboard" in out, out
        base = f"http://127.0.0.1:{web_port}/api/v1"

        demo = wait_for(lambda: _get(f"{base}/events/demo"), 30)
        assert demo["capacity"] == 1000

        accepted = http_json(
            "POST", f"{base}/ticket-requests", {"event_id": "demo", "user_id": "u1", "quantity": 2}
        )
        status_url = str(accepted["status_url"])
        # The simulated payment gateway captures at once, so the request goes on to confirmed.
        decided = wait_for(
            lambda: (s := _get(status_url)) and s.get("status") == "confirmed" and s, 30
        )
        assert decided["request_id"] == accepted["request_id"]
        assert len(decided["ticket_ids"]) == 2
        seats = _get(f"{base}/events/demo")
        assert seats["sold"] + seats["held"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        tail = read_until(proc, "\nstopped", 60)
        code = proc.wait(60)
    assert code == 0, tail
    assert "stopped" in tail


def _get(url: str) -> dict[str, object] | None:
    try:
        return http_json("GET", url)
    except OSError:
        return None
