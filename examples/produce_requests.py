"""Example: an external app creating an event and sending ticket requests with TicketClient.

Run against a running ``eventpro dev`` (or any broker EventPro uses)::

    .venv/bin/python examples/produce_requests.py --bootstrap 127.0.0.1:9092 --requests 100

It prints the event id and each request id; follow one with
``curl http://127.0.0.1:6066/api/v1/events/<event_id>/requests/<request_id>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random

from eventpro.client import TicketClient
from eventpro.settings import get_settings

__all__ = ("main", "produce")

logger = logging.getLogger(__name__)


async def produce(bootstrap: str, topic_prefix: str, requests: int, capacity: int) -> None:
    """Create one event, then send ``requests`` concurrent requests (one resent as duplicate)."""
    async with TicketClient(bootstrap, topic_prefix=topic_prefix, source="example") as client:
        event_id = await client.create_event(
            "Example concert", capacity=capacity, price_cents=4_500, max_per_user=4
        )
        print(f"event_id={event_id}")
        rng = random.Random(7)
        request_ids = await asyncio.gather(
            *(
                client.request_tickets(event_id, f"user-{i}", rng.randint(1, 4))
                for i in range(requests)
            )
        )
        if request_ids:
            # A resend with the same request_id: EventPro answers it once.
            await client.request_tickets(event_id, "user-0", 1, request_id=request_ids[0])
        for request_id in request_ids:
            print(f"request_id={request_id}")


def main() -> None:
    """Command-line entry point."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=settings.broker_url)
    parser.add_argument("--topic-prefix", default=settings.topic_prefix)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(produce(args.bootstrap, args.topic_prefix, args.requests, args.capacity))


if __name__ == "__main__":
    main()
