"""One load run end to end: check the topics, create the events, submit, wait, report."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import aiohttp
from tqdm import tqdm

from eventpro.loadgen.outcomes import OutcomeReader, OutcomeTracker
from eventpro.loadgen.plan import LoadPlan, build_plan
from eventpro.loadgen.report import LoadReport
from eventpro.loadgen.senders import (
    SendStats,
    create_events_http,
    create_events_kafka,
    kafka_partitions,
    send_http,
    send_kafka,
)
from eventpro.loadgen.spec import LoadgenError, LoadSpec
from eventpro.topics import ORDERS, RESERVATIONS, TICKET_REQUESTS

__all__ = ("run_loadgen",)

logger = logging.getLogger(__name__)


def _bootstrap(url: str) -> str:
    hosts = [part.strip() for part in url.replace(";", ",").split(",") if part.strip()]
    return ",".join(host.split("://", 1)[-1] for host in hosts)


async def _check_topics(
    bootstrap: str, topic_prefix: str, spec: LoadSpec
) -> tuple[int, dict[str, int]]:
    """Partition count of ticket-requests, and of the outcome topics to read."""
    requests_topic = f"{topic_prefix}{TICKET_REQUESTS}"
    outcome_topics = [f"{topic_prefix}{RESERVATIONS}", f"{topic_prefix}{ORDERS}"]
    try:
        found = await kafka_partitions(bootstrap, [requests_topic, *outcome_topics])
    except Exception as exc:  # aiokafka raises several types when the broker is unreachable
        raise LoadgenError(f"could not reach Kafka at {bootstrap}: {exc!r}") from exc
    for topic in (requests_topic, outcome_topics[0]):
        if topic not in found:
            raise LoadgenError(
                f"topic {topic!r} does not exist on {bootstrap}: start an EventPro worker "
                "with the same EVENTPRO_TOPIC_PREFIX first (it creates the topics), or pass "
                "--topic-prefix"
            )
    if spec.wait_for == "final" and outcome_topics[1] not in found:
        raise LoadgenError(
            f"--wait-for final needs topic {outcome_topics[1]!r}, which does not exist"
        )
    return found[requests_topic], {t: found[t] for t in outcome_topics if t in found}


async def run_loadgen(
    spec: LoadSpec,
    *,
    broker_url: str,
    topic_prefix: str = "",
    api_url: str | None = None,
    progress: bool | None = None,
) -> LoadReport:
    """Run ``spec`` against the deployment at ``broker_url`` (and ``api_url`` for http).

    Outcomes are always read from Kafka. ``progress=None`` shows bars only on a terminal.

    :raises LoadgenError: invalid options, broker unreachable, topics missing, events refused.
    """
    plan = build_plan(spec)
    bootstrap = _bootstrap(broker_url)
    if spec.transport == "http" and not api_url:
        raise LoadgenError("--transport http needs --api-url, e.g. http://127.0.0.1:6066")
    partitions, outcome_topics = await _check_topics(bootstrap, topic_prefix, spec)
    sent_at = [math.nan] * len(plan.requests)
    tracker = OutcomeTracker(plan, sent_at)
    reader = OutcomeReader(bootstrap, outcome_topics, tracker)
    await reader.start()
    disable = None if progress is None else not progress
    sent_bar = tqdm(total=len(plan.sends), desc="sent", unit="req", disable=disable)
    done_bar = tqdm(total=len(plan.requests), desc="decided", unit="req", disable=disable)
    stop = asyncio.Event()

    def refresh() -> None:
        done_bar.update(tracker.decided - done_bar.n)

    async def read() -> None:
        while not stop.is_set() and not tracker.complete(spec.wait_for):
            await reader.poll(200)
            refresh()

    reading = asyncio.create_task(read())
    try:
        sending = await _submit(
            plan, bootstrap, topic_prefix, partitions, api_url, sent_at, tracker, sent_bar.update
        )
        wait_start = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(reading), spec.timeout)
            timed_out = False
        except TimeoutError:
            timed_out = True
        wait_seconds = time.monotonic() - wait_start
    finally:
        stop.set()
        await asyncio.gather(reading, return_exceptions=True)
        refresh()
        sent_bar.close()
        done_bar.close()
        await reader.stop()
    target = api_url if spec.transport == "http" and api_url else f"kafka://{bootstrap}"
    return LoadReport(
        spec=spec,
        target=target,
        sending=sending,
        outcomes=tracker.summary(),
        timed_out=timed_out,
        wait_seconds=wait_seconds,
    )


async def _submit(
    plan: LoadPlan,
    bootstrap: str,
    topic_prefix: str,
    partitions: int,
    api_url: str | None,
    sent_at: list[float],
    tracker: OutcomeTracker,
    on_sent: Callable[[int], None],
) -> SendStats:
    spec = plan.spec
    if spec.transport == "kafka":
        await create_events_kafka(bootstrap, topic_prefix, plan.events)
        stats = await send_kafka(
            plan, bootstrap, f"{topic_prefix}{TICKET_REQUESTS}", partitions, sent_at, on_sent
        )
        if stats.failed:
            logger.warning("%d submissions were not acknowledged: %s", stats.failed, stats.errors)
        return stats
    base = (api_url or "").rstrip("/")
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            await create_events_http(session, base, plan.events)
        except aiohttp.ClientError as exc:
            raise LoadgenError(f"could not reach the API at {base}: {exc!r}") from exc
        return await send_http(
            plan, session, base, spec.concurrency, sent_at, on_sent, tracker.mark_refused
        )
