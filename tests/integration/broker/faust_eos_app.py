"""The counter app in processing_guarantee="exactly_once" mode, for the broker's transaction
tests: counts records per key in an in-memory table (restored from its changelog on every start)
and writes one output record per input, ``"<seq>:<count>"``, to ``eos-outputs``.

The output goes to the input's partition and ``eos-outputs`` is subscribed by a second agent, so
Faust sends it through the same transactional producer that commits the input offsets: output,
table update and offset commit form one transaction. Run as ``python faust_eos_app.py`` with
COUNTER_BROKER, COUNTER_PORT and COUNTER_DATA_DIR in the environment.

Plain Faust commits a partition's transaction from a timer while the agent may be in the middle
of a record: the record's output is in the transaction, its offset (not acked yet) is not, and a
worker killed before the next commit processes it again (seen: a partition's first transaction
committed offset 29 with the output of record 29, so k-counts came out one too high). The app
therefore commits as EventPro's consumer does (:mod:`eventpro.commit_gate`): only while no
record is in progress, after the producer buffer was flushed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TransportT
from faust.web import Request, Response, View

from eventpro.commit_gate import commit_gate


class GatedConsumer(aiokafka_driver.Consumer):
    """Commits between records only, with every buffered record handed to the client first."""

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        async with commit_gate.closed(5.0):
            await self.app.producer.flush()
            return await super().commit(*args, **kwargs)


class GatedTransport(aiokafka_driver.Transport):
    Consumer = GatedConsumer


class GatedApp(faust.App):
    def _new_transport(self) -> TransportT:
        return GatedTransport(self.conf.broker_consumer, self)


app = GatedApp(
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
        async with commit_gate.processing():  # acked when the next record is asked for
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
