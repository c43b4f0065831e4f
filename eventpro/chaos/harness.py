"""Run an on-sale under injected faults, wait for it to drain, and judge it by the invariants.

Timeline: the load is sent in chunks; right after a chunk is acknowledged (and the workers have
started deciding it) the next fault strikes: SIGKILL of a worker and its restart on the same
port and data dir, a worker joining (rebalance), SIGKILL of the broker and its restart on the
same port, or duplicate deliveries (requests resubmitted with their request_id, saga records
produced again byte for byte). After each fault one probe request per event measures when
every event is being processed again. Nothing waits a fixed time: every wait polls a condition
with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from eventpro.chaos.cluster import ChaosCluster
from eventpro.chaos.collector import TopicCollector
from eventpro.chaos.report import ChaosReport, Injection
from eventpro.chaos.spec import ChaosError, ChaosPlan, ChaosSpec, PlannedRequest, build_plan
from eventpro.client import TicketClient
from eventpro.invariants import (
    ApiSnapshot,
    check_all,
    outcomes_by_request,
)
from eventpro.schemas import (
    OrderConfirmed,
    PaymentCaptured,
    RefundIssued,
    RequestRejected,
    SeatsReleased,
    SeatsReserved,
)

__all__ = ("run_chaos", "wait_until")

logger = logging.getLogger(__name__)

T = TypeVar("T")
IDLE_REASON = "no partitions assigned yet"
"""A member the group gave nothing to: healthy, but it cannot be "ready"."""
HUNG_MARK = "wait_empty: Waiting for tasks"
"""Faust's log line of a worker whose rebalance waits for a record that never finishes."""
Say = Callable[[str], None]


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], limit: float, what: str, *, every: float = 0.2
) -> T:
    """Poll ``probe`` until it returns a truthy value; :class:`ChaosError` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(every)


class _Run:
    def __init__(self, spec: ChaosSpec, base_dir: Path, say: Say) -> None:
        self.spec = spec
        self.plan: ChaosPlan = build_plan(spec)
        self.cluster = ChaosCluster(spec, base_dir)
        self.say = say
        self.acked: dict[str, str] = {}
        self.probes = 0
        self.resubmitted = 0
        self.redelivered = 0
        self.injections: list[Injection] = []
        self.worker_restarts = 0
        self.stuck: list[int] = []
        self.log_marks: dict[int, int] = {}
        self.idle: set[int] = set()
        self.began = time.monotonic()
        self.http: aiohttp.ClientSession | None = None
        self.collector: TopicCollector | None = None
        self._rr = 0

    # -- helpers ---------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self.began

    def _urls(self) -> list[str]:
        return [w.url for w in self.cluster.workers if w.is_running()]

    def _url(self) -> str:
        urls = self._urls()
        if not urls:
            raise ChaosError("no worker is running; see the worker logs in the run directory")
        self._rr += 1
        return urls[self._rr % len(urls)]

    async def _get(self, url: str) -> dict[str, Any] | None:
        """The JSON body of a 200 answer, else ``None``."""
        status, body = await self._fetch(url)
        return body if status == 200 else None

    async def _fetch(self, url: str) -> tuple[int | None, dict[str, Any] | None]:
        """(HTTP status, JSON body); ``(None, None)`` when the worker did not answer."""
        assert self.http is not None
        try:
            async with self.http.get(url) as response:
                body: dict[str, Any] | None = None
                if response.content_type == "application/json":
                    body = await response.json()
                return response.status, body
        except (TimeoutError, aiohttp.ClientError):
            return None, None

    async def _get_settled(self, path: str, limit: float = 30.0) -> dict[str, Any] | None:
        """Like :meth:`_get` on some worker, retrying while workers rebalance (503) or are
        unreachable: the final snapshot must be the owners' answer, not a refusal."""
        deadline = time.monotonic() + limit
        while True:
            status, body = await self._fetch(f"{self._url()}{path}")
            if status not in (None, 503) or time.monotonic() >= deadline:
                return body if status == 200 else None
            await asyncio.sleep(0.2)

    async def _why_not_ready(self, only: int | None = None) -> str:
        """What the workers' ``/ready`` say, for messages."""
        assert self.http is not None
        parts = []
        for index, worker in enumerate(self.cluster.workers):
            if only is not None and index != only:
                continue
            try:
                async with self.http.get(f"{worker.url}/ready") as response:
                    body = await response.text()
            except (TimeoutError, aiohttp.ClientError) as exc:
                body = repr(exc)
            parts.append(f"worker-{index}: {body[:300]}")
        return "; ".join(parts)

    async def _heal_hung(self) -> None:
        """SIGKILL and restart workers whose log shows a rebalance waiting forever.

        Faust waits without limit for an in-flight record whose agent never finishes (seen
        after a broker restart); the group cannot rebalance while such a member hangs in it.
        """
        if not self.spec.heal_stuck_workers:
            return
        for index, worker in enumerate(self.cluster.workers):
            mark = self.log_marks.setdefault(index, 0)
            if not worker.is_running() or HUNG_MARK not in _log_since(worker.log_path, mark):
                continue
            self.stuck.append(index)
            self.say(f"worker-{index} hangs ({HUNG_MARK!r} in {worker.log_path}); SIGKILL+restart")
            worker.kill()
            self.log_marks[index] = _log_size(worker.log_path)
            await asyncio.to_thread(self.cluster.restart_worker, index)

    async def _ready_reasons(self, url: str) -> list[str]:
        """Why ``/ready`` is not 200 (empty when ready)."""
        assert self.http is not None
        try:
            async with self.http.get(f"{url}/ready") as response:
                if response.status == 200:
                    return []
                body = await response.json(content_type=None)
                return [str(r) for r in body.get("reasons", ["not ready"])]
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return [repr(exc)]

    async def _all_ready(self) -> bool:
        answers = await asyncio.gather(*(self._get(f"{u}/ready") for u in self._urls()))
        return bool(answers) and all(a is not None for a in answers)

    async def _send(self, requests: Iterable[PlannedRequest], *, resend: bool = False) -> None:
        """Produce requests (acks=all); a request counts as acknowledged once the call returns."""
        batch = list(requests)
        for attempt in range(5):
            try:
                async with TicketClient(
                    self.cluster.broker.bootstrap, topic_prefix=self.cluster.prefix, source="chaos"
                ) as client:
                    for start in range(0, len(batch), 500):
                        part = batch[start : start + 500]
                        await asyncio.gather(
                            *(
                                client.request_tickets(
                                    r.event_id, r.user_id, r.quantity, r.request_id
                                )
                                for r in part
                            )
                        )
                        for r in part:
                            self.acked[r.request_id] = r.event_id
                return
            except Exception as exc:  # aiokafka raises several types while the broker recovers
                logger.warning("sending failed (attempt %d): %s", attempt + 1, exc)
                batch = [r for r in batch if resend or r.request_id not in self.acked]
                await asyncio.sleep(0.5 * (attempt + 1))
        raise ChaosError("could not produce the requests; see broker.log in the run directory")

    async def _decided(self, request_ids: Iterable[str]) -> set[str]:
        assert self.collector is not None
        await self.collector.drain()
        wanted = set(request_ids)
        done = set()
        for cls in (SeatsReserved, RequestRejected, OrderConfirmed, SeatsReleased):
            done |= {e.data.request_id for e in self.collector.snapshot().of(cls)} & wanted
        return done

    async def _probe(self, ready_at: float) -> float:
        """One fresh request per event; seconds from ``ready_at`` until every one is decided."""
        self.probes += 1
        probes = [
            PlannedRequest(
                f"{self.spec.run_id}-probe{self.probes}-{i}",
                event.event_id,
                f"{self.spec.run_id}-prober{self.probes}-{i}",
                1,
            )
            for i, event in enumerate(self.plan.events)
        ]
        await self._send(probes)
        ids = {p.request_id for p in probes}

        async def all_decided() -> bool:
            return await self._decided(ids) == ids

        await wait_until(all_decided, 120, "probe requests to be decided after a fault")
        return time.monotonic() - ready_at

    # -- faults ----------------------------------------------------------------------------

    async def _kill_worker(self, victim: int, at: float, in_flight: int) -> Injection:
        running = [i for i, w in enumerate(self.cluster.workers) if w.is_running()]
        index = running[victim % len(running)]
        worker = self.cluster.workers[index]
        killed = time.monotonic()
        worker.kill()
        self.say(f"SIGKILLed worker-{index}; restarting it on port {worker.web_port}")
        ready_s = await asyncio.to_thread(self.cluster.restart_worker, index)
        resumed = await self._probe(killed + ready_s)
        return Injection(
            "kill-worker",
            f"worker-{index}",
            at,
            in_flight,
            ready_s,
            resumed,
            time.monotonic() - killed,
        )

    async def _join_worker(self, at: float, in_flight: int) -> Injection:
        began = time.monotonic()
        worker, ready_s = await asyncio.to_thread(self.cluster.add_worker)
        self.say(f"worker-{len(self.cluster.workers) - 1} joined on port {worker.web_port}")
        resumed = await self._probe(began + ready_s)
        return Injection(
            "join-worker",
            f"worker-{len(self.cluster.workers) - 1}",
            at,
            in_flight,
            ready_s,
            resumed,
            time.monotonic() - began,
        )

    async def _kill_broker(self, at: float, in_flight: int) -> Injection:
        assert self.collector is not None
        await self.collector.close()
        killed = time.monotonic()
        self.cluster.broker.kill()
        self.say(f"SIGKILLed the broker; restarting it on {self.cluster.broker.bootstrap}")
        await asyncio.to_thread(self.cluster.broker.start)
        broker_ready = time.monotonic() - killed

        async def workers_back() -> bool:
            not_ready = []
            for index, worker in enumerate(self.cluster.workers):
                if not worker.is_running():
                    self.worker_restarts += 1
                    self.say(f"worker-{index} exited after losing the broker; restarting it")
                    await asyncio.to_thread(self.cluster.restart_worker, index)
                reasons = await self._ready_reasons(worker.url)
                if reasons == [IDLE_REASON]:
                    self.idle.add(index)
                elif reasons:
                    not_ready.append(index)
            await self._heal_hung()
            return not not_ready

        try:
            await wait_until(workers_back, 240, "every worker to be ready after the broker restart")
        except ChaosError as exc:
            raise ChaosError(f"{exc}; /ready says: {await self._why_not_ready()}") from None
        workers_ready = time.monotonic() - killed
        ready_at = killed + broker_ready
        resumed = await self._probe(ready_at)
        return Injection(
            "kill-broker",
            "broker",
            at,
            in_flight,
            broker_ready,
            resumed,
            time.monotonic() - killed,
            detail=f"all workers /ready {workers_ready:.2f}s after the kill",
        )

    async def _duplicates(self, at: float, in_flight: int) -> Injection:
        assert self.collector is not None
        await self.collector.drain()
        resend = [r for r in self.plan.duplicates if r.request_id in self.acked]
        await self._send(resend, resend=True)
        self.resubmitted += len(resend)
        rng = random.Random(self.spec.seed * 7919)
        keys = sorted(k for k in self.collector.raw if k[0] in ("reservations", "payments"))
        chosen = rng.sample(keys, round(len(keys) * self.plan.record_share))
        producer = AIOKafkaProducer(
            bootstrap_servers=self.cluster.broker.bootstrap, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            futures = [
                await producer.send(
                    f"{self.cluster.prefix}{topic}",
                    key=self.collector.raw[(topic, partition, offset)][0],
                    value=self.collector.raw[(topic, partition, offset)][1],
                    partition=partition,
                )
                for topic, partition, offset in chosen
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        self.redelivered += len(chosen)
        self.say(f"resubmitted {len(resend)} requests, delivered {len(chosen)} saga records again")
        return Injection(
            "duplicates",
            "producers",
            at,
            in_flight,
            None,
            None,
            None,
            detail=f"{len(resend)} requests resubmitted, {len(chosen)} records redelivered",
        )

    # -- run -------------------------------------------------------------------------------

    async def _mid_stream(self, chunk: tuple[PlannedRequest, ...]) -> int:
        """Wait until the workers started deciding ``chunk``; return requests still open."""
        ids = {r.request_id for r in chunk}

        async def started() -> set[str] | None:
            return await self._decided(ids) or None

        await wait_until(started, 120, "the workers to start deciding the chunk")
        assert self.collector is not None
        finished = set(outcomes_by_request(self.collector.snapshot()))
        return len(set(self.acked) - finished)

    async def _drained(self) -> bool:
        assert self.collector is not None
        await self._heal_hung()
        await self.collector.drain()
        records = self.collector.snapshot()
        outcomes = outcomes_by_request(records)
        if set(self.acked) - set(outcomes):
            return False
        captured = {e.data.reservation_id for e in records.of(PaymentCaptured)}
        resolved = {e.data.reservation_id for e in records.of(OrderConfirmed)}
        resolved |= {e.data.reservation_id for e in records.of(RefundIssued)}
        if captured - resolved:
            return False
        notified = {r.envelope.data.request_id for r in records.in_topic("notifications")}
        if set(self.acked) - notified:
            return False
        states = await asyncio.gather(
            *(self._get(f"{self._url()}/api/v1/events/{e.event_id}") for e in self.plan.events)
        )
        return all(s is not None and s["held"] == 0 for s in states)

    async def _api_snapshot(self) -> ApiSnapshot:
        events = {}
        for event in self.plan.events:
            state = await self._get_settled(f"/api/v1/events/{event.event_id}")
            if state is not None:
                events[event.event_id] = state
        gate = asyncio.Semaphore(32)

        async def status(rid: str, event_id: str) -> tuple[str, dict[str, Any] | None]:
            async with gate:
                return rid, await self._get_settled(f"/api/v1/events/{event_id}/requests/{rid}")

        answers = await asyncio.gather(*(status(r, e) for r, e in self.acked.items()))
        return ApiSnapshot(events, {rid: body for rid, body in answers if body is not None})

    def _sink(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for index in range(len(self.cluster.workers)):
            path = self.cluster.notifications_log(index)
            if path.exists():
                lines.extend(orjson.loads(x) for x in path.read_bytes().splitlines() if x)
        return lines

    async def run(self) -> ChaosReport:
        spec, plan, cluster = self.spec, self.plan, self.cluster
        self.say(f"starting the broker and {spec.workers} worker(s) in {cluster.base_dir}")
        await asyncio.to_thread(cluster.start_broker)
        for _ in range(spec.workers):
            await asyncio.to_thread(cluster.add_worker)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            self.http = http
            await wait_until(self._all_ready, 120, "the workers to be ready")
            async with TicketClient(
                cluster.broker.bootstrap, topic_prefix=cluster.prefix, source="chaos"
            ) as client:
                for event in plan.events:
                    await client.create_event(
                        event.event_id,
                        event.capacity,
                        spec.price_cents,
                        max_per_user=spec.max_per_user,
                        event_id=event.event_id,
                    )
            for event in plan.events:
                url = f"/api/v1/events/{event.event_id}"
                await wait_until(lambda u=url: self._get(f"{self._url()}{u}"), 60, url)
            self.collector = TopicCollector(
                cluster.broker.bootstrap, cluster.prefix, spec.partitions
            )
            try:
                await self._load()
                drain_began = time.monotonic()
                try:
                    await wait_until(
                        self._drained, spec.drain_timeout, "the load to drain", every=0.5
                    )
                    drained = True
                except ChaosError as exc:
                    self.say(str(exc))
                    drained = False
                drain_s = time.monotonic() - drain_began
                api = await self._api_snapshot()
                seen = self.collector.snapshot()
            finally:
                await self.collector.close()
            final = TopicCollector(cluster.broker.bootstrap, cluster.prefix, spec.partitions)
            try:
                await final.drain()
            finally:
                await final.close()
            records = final.snapshot()
        capacities = {e.event_id: e.capacity for e in plan.events}
        results = check_all(
            records,
            capacities=capacities,
            acknowledged=self.acked,
            api=api,
            sink=self._sink(),
            seen_earlier=list(seen.all()),
        )
        return ChaosReport(
            run_id=spec.run_id,
            seed=spec.seed,
            workers_start=spec.workers,
            workers_end=len(cluster.workers),
            partitions=spec.partitions,
            events=spec.events,
            capacity_per_event=plan.events[0].capacity,
            requests=len(plan.requests),
            probes=len(self.acked) - len(plan.requests),
            resubmitted=self.resubmitted,
            records_redelivered=self.redelivered,
            outcomes=_outcome_counts(records),
            sold={e: s.get("sold", 0) for e, s in api.events.items()},
            injections=tuple(self.injections),
            invariants=tuple(results),
            drained=drained,
            drain_s=drain_s,
            duration_s=self._elapsed(),
            worker_restarts_after_broker_loss=self.worker_restarts,
            notes=self._notes(records.undecodable),
        )

    def _notes(self, undecodable: int) -> tuple[str, ...]:
        notes = []
        if undecodable:
            notes.append(f"{undecodable} undecodable record(s) skipped")
        for index in self.stuck:
            notes.append(
                f"worker-{index} hung in a rebalance ({HUNG_MARK!r} in its log) and was "
                "SIGKILLed and restarted"
            )
        for index in sorted(self.idle):
            notes.append(
                f"worker-{index} was left without partitions after the broker restart "
                "(/ready: no partitions assigned yet)"
            )
        return tuple(notes)

    async def _load(self) -> None:
        victims = iter(self.plan.victims)
        for k, chunk in enumerate(self.plan.chunks):
            await self._send(chunk)
            self.say(f"chunk {k + 1}/{len(self.plan.chunks)}: {len(chunk)} requests acknowledged")
            if k >= len(self.spec.faults):
                continue
            fault = self.spec.faults[k]
            in_flight = await self._mid_stream(chunk)
            at = self._elapsed()
            if fault == "kill-worker":
                injection = await self._kill_worker(next(victims), at, in_flight)
            elif fault == "join-worker":
                injection = await self._join_worker(at, in_flight)
            elif fault == "kill-broker":
                injection = await self._kill_broker(at, in_flight)
            else:
                injection = await self._duplicates(at, in_flight)
            self.injections.append(injection)


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _outcome_counts(records: Any) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for found in outcomes_by_request(records).values():
        env = next(iter(found.values()))
        data = env.data
        if isinstance(data, OrderConfirmed):
            counts["confirmed"] += 1
        elif isinstance(data, RequestRejected):
            counts[f"rejected:{data.reason.value}"] += 1
        else:
            counts[f"failed:{data.reason.value}"] += 1
    return dict(counts)


async def run_chaos(spec: ChaosSpec, base_dir: Path, *, say: Say | None = None) -> ChaosReport:
    """Run one chaos on-sale in ``base_dir`` (broker and worker data and logs) and report.

    Processes are always stopped (SIGKILL after a timeout) before this returns or raises.

    :raises ChaosError: the cluster could not be started or a fault never recovered.
    """
    run = _Run(spec.validate(), Path(base_dir), say or (lambda text: logger.info("%s", text)))
    try:
        return await run.run()
    finally:
        await asyncio.to_thread(run.cluster.stop)
