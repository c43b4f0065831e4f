"""The counter app in processing_guarantee="exactly_once" mode, for the broker's transaction
tests: counts records per key in an in-memory table (restored from its changelog on every start)
and writes one output record per input, ``"<seq>:<count>"``, to ``eos-outputs``.

The output goes to the input's partition and ``eos-outputs`` is subscribed by a second agent, so
Faust sends it through the same transactional producer that commits the input offsets: output,
table update and offset commit form one transaction. Run as ``python faust_eos_app.py`` with
COUNTER_BROKER, COUNTER_PORT and COUNTER_DATA_DIR in the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import faust
from faust.web import Request, Response, View

app = faust.App(
    "broker-eos-counter",
    broker=f"kafka://{os.environ.get('COUNTER_BROKER', '127.0.0.1:9092')}",
    store="memory://",
    processing_guarantee="exactly_once",
    datadir=Path(os.environ.get("COUNTER_DATA_DIR", "eos-data")),
    topic_partitions=4,
    web_host="127.0.0.1",
    web_port=int(os.environ.get("COUNTER_PORT", "6098")),
    broker_rebalance_timeout=5,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    broker_commit_interval=1.0,
    producer_linger_ms=5,
    web_tables_enabled=False,
)
codecs = {"key_serializer": "json", "value_serializer": "json"}
numbers = app.topic("eos-numbers", key_type=str, value_type=str, partitions=4, **codecs)
outputs = app.topic("eos-outputs", key_type=str, value_type=str, partitions=4, **codecs)
counts = app.Table("eos-counts", key_type=str, value_type=int, default=int, partitions=4)


@app.agent(numbers)
async def count(stream: faust.StreamT[str]) -> None:
    async for event in stream.events():
        key = event.key
        counts[key] += 1
        await outputs.send(
            key=key, value=f"{event.value}:{counts[key]}", partition=event.message.partition
        )


@app.agent(outputs)
async def audit(stream: faust.StreamT[str]) -> None:
    """Subscribes eos-outputs so Faust puts it in the input's transactional topic group."""
    async for _ in stream:
        pass


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
