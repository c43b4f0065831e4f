"""The broker benchmark runs end to end at a tiny scale and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

from bench.broker import main


def test_broker_benchmark_writes_report(tmp_path: Path) -> None:
    main(["--records", "3000", "--size", "100", "--partitions", "2", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "broker.json").read_text())
    assert data["results"]["produce"]["records"] == 3000
    assert data["results"]["consume"]["records_per_s"] > 0
    assert "| produce |" in (tmp_path / "broker.md").read_text()
