"""A minimal Faust app for the broker's Faust conformance test: counts records per key in a
RocksDB table with a changelog and serves the whole table at GET /counts.

Run as ``python faust_counter_app.py`` with COUNTER_BROKER, COUNTER_PORT and COUNTER_DATA_DIR in
the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import faust
from faust.web import Request, Response, View

app = faust.App(
    "broker-conformance-counter",
    broker=f"kafka://{os.environ.get('COUNTER_BROKER', '127.0.0.1:9092')}",
    store="rocksdb://",
    datadir=Path(os.environ.get("COUNTER_DATA_DIR", "counter-data")),
    topic_partitions=4,
    web_host="127.0.0.1",
    web_port=int(os.environ.get("COUNTER_PORT", "6099")),
    broker_rebalance_timeout=5,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    producer_linger_ms=5,
    web_tables_enabled=False,
)
numbers = app.topic("counter-numbers", key_type=str, value_type=str, partitions=4)
counts = app.Table("counts", key_type=str, value_type=int, default=int, partitions=4)


@app.agent(numbers)
async def count(stream: faust.StreamT[str]) -> None:
    async for key in stream.group_by(lambda value: value, name="by-value"):
        counts[key] += 1


@app.page("/counts")
class CountsView(View):
    async def get(self, request: Request) -> Response:
        recovery = self.app.tables.recovery
        ready = (
            bool(self.app.consumer.assignment())
            and not self.app.rebalancing
            and recovery.completed.is_set()
            and not recovery.in_recovery
        )
        return self.json({"ready": ready, "counts": dict(counts.items())})


if __name__ == "__main__":
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
