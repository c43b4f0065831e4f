"""The naive baseline of stage 1: one Faust agent, two RocksDB tables, one record per request.

    python -m bench.baseline_naive      # configured by the BENCH_NAIVE_* variables below

What a straightforward Faust implementation of "dedup + seat check + outcome record" looks
like, to measure EventPro against: per record it decodes the envelope with ``json``, looks the
request up in a ``dedup`` table (a resubmission re-emits the stored outcome), checks and
decrements the event's ``seats`` table, stores the outcome, and sends one outcome record. Faust
settings are the defaults except what is needed to run (broker, store, data dir, web port,
partitions, raw bytes on the topics). Input is EventPro's ``ticket-requests`` format
(``EventCreated`` opens an event); output has the shape of EventPro's outcome envelopes
(``SeatsReserved`` / ``RequestRejected``), so the benchmark checks both the same way.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import faust

from eventpro.processes import exit_with_parent

__all__ = ("READY_PREFIX", "app", "decide", "main")

logger = logging.getLogger(__name__)

READY_PREFIX = "naive baseline ready: "

BROKER = os.environ.get("BENCH_NAIVE_BROKER", "kafka://127.0.0.1:9092")
APP_ID = os.environ.get("BENCH_NAIVE_APP_ID", "naive-baseline")
INPUT_TOPIC = os.environ.get("BENCH_NAIVE_INPUT", "naive-ticket-requests")
OUTPUT_TOPIC = os.environ.get("BENCH_NAIVE_OUTPUT", "naive-reservations")
PARTITIONS = int(os.environ.get("BENCH_NAIVE_PARTITIONS", "4"))

app = faust.App(
    APP_ID,
    broker=BROKER,
    store="rocksdb://",
    datadir=os.environ.get("BENCH_NAIVE_DATADIR", "naive-data"),
    web_port=int(os.environ.get("BENCH_NAIVE_WEB_PORT", "6067")),
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    topic_partitions=PARTITIONS,
)
requests_topic = app.topic(
    INPUT_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
outcomes_topic = app.topic(
    OUTPUT_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
dedup = app.Table("dedup", default=None)
seats = app.Table("seats", default=None)


def _outcome(event_type: str, data: dict[str, Any], reason: str | None) -> dict[str, Any]:
    request_id = data["request_id"]
    return {
        "event_type": event_type,
        "schema_version": 1,
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"naive/{event_type}/{request_id}")),
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": {
            "request_id": request_id,
            "event_id": data["event_id"],
            "user_id": data["user_id"],
            "quantity": data["quantity"],
            **({"reason": reason} if reason else {}),
        },
    }


@app.agent(requests_topic)
async def decide(stream: faust.StreamT[bytes]) -> None:
    """Decide each request on its own: dedup, seat check, one outcome record."""
    async for key, value in stream.items():
        message = json.loads(value)
        data = message["data"]
        if message["event_type"] == "EventCreated":
            if seats.get(data["event_id"]) is None:
                seats[data["event_id"]] = data["capacity"]
            continue
        if message["event_type"] != "TicketRequested":
            continue
        outcome = dedup.get(data["request_id"])
        if outcome is None:
            remaining = seats.get(data["event_id"])
            if remaining is None:
                outcome = _outcome("RequestRejected", data, "unknown_event")
            elif 1 <= data["quantity"] <= remaining:
                seats[data["event_id"]] = remaining - data["quantity"]
                outcome = _outcome("SeatsReserved", data, None)
            else:
                outcome = _outcome("RequestRejected", data, "sold_out")
            dedup[data["request_id"]] = outcome
        await outcomes_topic.send(key=key, value=json.dumps(outcome).encode())


class _Worker(faust.Worker):
    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        print(f"{READY_PREFIX}{self.app.conf.web_port}", flush=True)


def main() -> None:
    """Run the baseline worker until SIGTERM."""
    exit_with_parent()  # a killed benchmark leaves no baseline worker behind
    worker = _Worker(
        app,
        loglevel=os.environ.get("BENCH_NAIVE_LOG_LEVEL", "WARNING"),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.spinner = None
    worker.execute_from_commandline()
    sys.exit(0)


if __name__ == "__main__":
    main()
