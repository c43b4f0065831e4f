"""`eventpro dev` as a user runs it: starts everything, serves the API, stops on Ctrl-C, and
leaves nothing running when it is killed outright."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from support.cluster import free_port
from support.procfs import process_gone


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


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _port_free(port: int) -> bool:
    """Whether a new broker could listen on ``port`` (with SO_REUSEADDR, as asyncio's servers
    bind: connections of the old one may linger in TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_killing_dev_outright_stops_its_broker_and_worker(tmp_path: Path) -> None:
    """SIGKILL gives `eventpro dev` no chance to stop its children: they stop by themselves,
    and the broker's port is free for the next `make run`."""
    web_port, broker_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "eventpro", "dev", "--data-dir", str(tmp_path / "data")),
            *("--web-port", str(web_port), "--broker-port", str(broker_port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    children: list[int] = []
    try:
        out = read_until(proc, "Ctrl-C stops everything", 120)
        assert "Ctrl-C stops everything" in out, out
        children = _children(proc.pid)
        assert len(children) == 2, children  # the broker and one worker
        proc.kill()
        proc.wait(10)
        wait_for(lambda: all(process_gone(child) for child in children), 60)
        wait_for(lambda: _port_free(broker_port), 10)
    finally:
        for child in children:
            if not process_gone(child):
                os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    logs = tmp_path / "data" / "logs"
    assert "is gone: stopping" in (logs / "broker.log").read_text()
    assert "is gone: stopping" in (logs / "worker-0.log").read_text()


def _get(url: str) -> dict[str, object] | None:
    try:
        return http_json("GET", url)
    except OSError:
        return None
