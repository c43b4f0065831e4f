"""The batched inventory agent under Faust's test context: every table write of a batch goes
to the changelog partition of its own record's partition, and outcomes stay per record."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from eventpro.agents import inventory
from eventpro.agents.inventory import inventory_agent
from eventpro.schemas import Envelope, EventCreated, TicketRequested, encode
from eventpro.settings import get_settings
from eventpro.tables import state, ticketing
from eventpro.topics import partition_for_key

PARTITIONS = get_settings().partitions


def _part(event_id: str) -> int:
    return partition_for_key(event_id.encode(), PARTITIONS)


def _two_events_on_different_partitions() -> tuple[str, str]:
    first = "ev-batch-0"
    for n in range(1, 100):
        other = f"ev-batch-{n}"
        if _part(other) != _part(first):
            return first, other
    raise AssertionError("no event id on another partition")


def _created(event_id: str) -> bytes:
    data = EventCreated(event_id=event_id, name="S", capacity=5, price_cents=100, max_per_user=4)
    return encode(Envelope.new(data, source="test"))


def _request(event_id: str, request_id: str, user_id: str) -> bytes:
    data = TicketRequested(event_id=event_id, request_id=request_id, user_id=user_id, quantity=1)
    return encode(Envelope.new(data, source="test"))


@pytest.fixture()
def changelog(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int | None]]:
    """Records (table, key, changelog partition) of every table write."""
    log: list[tuple[str, str, int | None]] = []
    for table in (
        ticketing.inventory_table,
        ticketing.holds_table,
        ticketing.user_tickets_table,
        ticketing.request_status_table,
    ):

        def send(partition: int | None, key: Any, value: Any, *a: Any, _t: Any = table) -> Any:
            log.append((_t.name, key, partition))
            return SimpleNamespace(message=SimpleNamespace(partition=partition))

        monkeypatch.setattr(table, "send_changelog", send)
    return log


async def test_a_mixed_batch_writes_each_key_on_its_own_partition(
    faust_app: object, outbox: Any, changelog: list[tuple[str, str, int | None]]
) -> None:
    assert inventory.BATCH_SIZE > 1
    ev_a, ev_b = _two_events_on_different_partitions()
    records = [
        (_created(ev_a), ev_a),
        (_created(ev_b), ev_b),
        (_request(ev_a, "a1", "u1"), ev_a),
        (_request(ev_b, "b1", "u1"), ev_b),
        (_request(ev_a, "a2", "u2"), ev_a),
        (_request(ev_a, "a1", "u1"), ev_a),  # a resubmission inside the batch
        (_request(ev_b, "b2", "u2"), ev_b),
    ]
    async with inventory_agent.test_context() as agent:
        for n, (value, event_id) in enumerate(records):
            await agent.put(
                value,
                key=event_id.encode(),
                partition=_part(event_id),
                wait=n == len(records) - 1,
            )
        # every record was handled (a batch's first label arrives after its flush)
        for _ in range(20):
            if len(outbox.on("reservations")) >= 5:
                break
            await agent.put(_request(ev_b, "b1", "u1"), key=ev_b.encode(), partition=_part(ev_b))

    holds = {
        r.envelope.data.reservation_id: r.envelope.data.event_id
        for r in outbox.on("reservations")
        if r.envelope.event_type == "SeatsReserved"
    }
    assert len(holds) == 4
    assert changelog, "no table writes recorded"
    for table, key, partition in changelog:
        event_id = holds.get(key, key.split("/")[0])
        assert partition == _part(event_id), (table, key, partition)
    for event_id, held in ((ev_a, 2), (ev_b, 2)):
        counters = state.inventory(event_id)
        assert counters is not None and counters.held == held
    outcome_ids = {r.envelope.event_id for r in outbox.on("reservations")}
    assert len(outcome_ids) == 4  # the resubmission re-emits the same SeatsReserved


async def test_a_batch_waits_while_the_group_lease_has_lapsed(
    faust_app: object,
    outbox: Any,
    changelog: list[tuple[str, str, int | None]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker out of touch with the group coordinator decides nothing until it is confirmed."""
    from support.waiting import wait_for

    from eventpro.membership import group_lease

    monkeypatch.setattr(group_lease, "_session_timeout_s", 10.0)
    monkeypatch.setattr(group_lease, "_confirmed_at", group_lease.now() - 60.0)
    event_id = "ev-lease-0"
    async with inventory_agent.test_context() as agent:
        with caplog.at_level(logging.WARNING, logger="eventpro.membership"):
            for value in (_created(event_id), _request(event_id, "l1", "u1")):
                await agent.put(value, key=event_id.encode(), partition=_part(event_id), wait=False)

            async def held() -> bool:
                return "holds a batch" in caplog.text

            await wait_for(held, 10, "the agent to hold its batch")
        assert not outbox.on("reservations") and not changelog  # nothing decided or written
        group_lease.confirm(group_lease.now())  # a heartbeat got through: same generation

        async def decided() -> bool:
            return bool(outbox.on("reservations"))

        await wait_for(decided, 10, "the held batch to be decided")
    assert [r.envelope.event_type for r in outbox.on("reservations")] == ["SeatsReserved"]
