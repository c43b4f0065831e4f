"""Agent tests: the real app and agents, memory:// tables, Faust's agent test context."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.agents.agent import AgentTestWrapper

from eventpro.agents import inventory as inventory_module
from eventpro.agents import output as output_module
from eventpro.app import app
from eventpro.schemas import Envelope, decode
from eventpro.tables import ticketing


@dataclass
class SentRecord:
    """One record the agent produced."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None

    @property
    def envelope(self) -> Envelope:
        return decode(self.value)


@dataclass
class Outbox:
    """Collects what the agent sends, per logical topic."""

    records: list[SentRecord] = field(default_factory=list)
    barriers: int = 0
    """Times the agent waited for the broker's acknowledgements (``inventory.persisted``)."""

    def on(self, topic: str) -> list[SentRecord]:
        return [r for r in self.records if r.topic == topic]


class _FakeTopic:
    def __init__(self, logical: str, outbox: Outbox) -> None:
        self.logical = logical
        self.outbox = outbox

    async def send(self, *, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        self.outbox.records.append(SentRecord(self.logical, key, value, partition))


async def _no_declare() -> None:
    """Topic creation needs a broker; agent tests have none."""


@pytest.fixture()
async def faust_app() -> AsyncIterator[object]:
    """The app bound to this test's loop, with in-memory tables emptied before the test."""
    app.loop = asyncio.get_running_loop()
    app.finalize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app.conf.store = "memory://"
    app.flow_control.resume()
    for table in (
        ticketing.inventory_table,
        ticketing.holds_table,
        ticketing.user_tickets_table,
        ticketing.request_status_table,
    ):
        table.data._clear()  # memory store: start every test from empty tables
    inventory_module.expiry_index.invalidate()
    inventory_module.pending_recount.invalidate()
    yield app


@pytest.fixture(autouse=True)
def put_waits_for_finished_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """``agent.put`` returns once the agent yielded; the inventory agent's batches are then
    decided but may still be waiting in its finisher: wait for those too."""
    put = AgentTestWrapper.put

    async def put_and_finish(self: AgentTestWrapper, *args: Any, **kwargs: Any) -> Any:
        event = await put(self, *args, **kwargs)
        await inventory_module.finisher.drained()
        inventory_module.finisher.raise_if_failed()
        return event

    monkeypatch.setattr(AgentTestWrapper, "put", put_and_finish)


@pytest.fixture()
def outbox(monkeypatch: pytest.MonkeyPatch) -> Outbox:
    """Replace the agent's output topics with a recorder."""
    box = Outbox()
    monkeypatch.setattr(output_module, "topic_for", lambda logical: _FakeTopic(logical, box))
    monkeypatch.setattr(inventory_module, "ticks_topic", _FakeTopic("inventory-ticks", box))
    monkeypatch.setattr(inventory_module, "declare_topics", _no_declare)

    async def persisted(futures: Any) -> None:  # no producer runs in agent tests: count them
        box.barriers += 1

    monkeypatch.setattr(inventory_module, "persisted", persisted)
    return box
