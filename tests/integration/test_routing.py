"""Two workers share the partitions; the API answers the same from either (reads are routed to
the worker that owns the event's partition)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
from support.cluster import WorkerFactory

EVENTS = 8


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def until(probe: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_any_worker_answers_for_every_event(worker_factory: WorkerFactory) -> None:
    first = worker_factory()
    second = worker_factory()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:

        async def both_ready() -> bool:
            statuses = [await get_json(http, f"{w.url}/ready") for w in (first, second)]
            owned = [body.get("assigned_partitions", 0) for _, body in statuses]
            return all(code == 200 for code, _ in statuses) and all(owned)

        await until(both_ready, 60, "both workers ready with partitions of their own")

        event_ids = [f"route-{i}-{uuid.uuid4().hex[:6]}" for i in range(EVENTS)]
        for event_id in event_ids:
            body = {"name": event_id, "capacity": 10, "price_cents": 100, "event_id": event_id}
            async with http.post(f"{first.url}/api/v1/events", json=body) as response:
                assert response.status == 201, await response.text()

        request_ids = {}
        for event_id in event_ids:
            body = {"event_id": event_id, "user_id": "u", "quantity": 3}
            async with http.post(f"{second.url}/api/v1/ticket-requests", json=body) as response:
                assert response.status == 202, await response.text()
                request_ids[event_id] = (await response.json())["request_id"]

        for event_id in event_ids:

            async def sold_everywhere(event_id: str = event_id) -> bool:
                answers = [
                    await get_json(http, f"{w.url}/api/v1/events/{event_id}")
                    for w in (first, second)
                ]
                return all(code == 200 and body["sold"] == 3 for code, body in answers)

            await until(sold_everywhere, 30, f"{event_id} sold=3 on both workers")
            url = f"/api/v1/events/{event_id}/requests/{request_ids[event_id]}"
            one = await get_json(http, first.url + url)
            two = await get_json(http, second.url + url)
            assert one == two
            assert one[0] == 200 and one[1]["status"] == "confirmed"

        # /api/v1/stats gathers every worker's events: both answer with all of them.
        async def stats_complete() -> list[Any] | None:
            answers = [
                await get_json(http, f"{w.url}/api/v1/stats?window=60") for w in (first, second)
            ]
            if any(code != 200 or body["partial"] for code, body in answers):
                return None
            if any(not set(event_ids) <= set(body["events"]) for _, body in answers):
                return None
            if any(body["totals"]["sold"] < 3 * EVENTS for _, body in answers):
                return None
            return answers

        answers = await until(stats_complete, 30, "stats gathered across both workers")
        owners = [{w["worker"] for w in body["workers"]} for _, body in answers]
        assert owners[0] == owners[1] and len(owners[0]) == 2
        assert answers[0][1]["totals"]["sold"] == answers[1][1]["totals"]["sold"] == 3 * EVENTS
