"""`eventpro broker` on a port that is taken: one clear line and exit code 1, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def test_a_taken_port_is_reported_once_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "eventpro", "broker", "--port", str(port)),
                *("--data-dir", str(tmp_path / "broker")),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    assert f"EventPro broker could not start on 127.0.0.1:{port}:" in done.stderr
    assert "Traceback" not in done.stderr
    assert "ready" not in done.stdout
