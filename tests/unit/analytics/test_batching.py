"""Batched counting: the same counts as fact by fact, each totals and window key written once."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from eventpro.analytics.agent import count_batch
from eventpro.analytics.batching import BatchedAnalytics
from eventpro.analytics.facts import FactKind, SaleFact
from eventpro.analytics.processor import AnalyticsProcessor, DictSeenStore, DictWindowStore
from eventpro.analytics.windows import Window
from eventpro.schemas import Envelope, PaymentCaptured, SeatsReserved, encode
from eventpro.tables.batching import BatchCursor

T0 = 1_700_000_040.0
HISTORY = 6


def expires(size: int) -> float:
    return size * HISTORY


@dataclass(frozen=True)
class Record:
    """Stands for the Faust event a fact was read from."""

    partition: int


class Recorder:
    """The context the batch activates (Faust's current event) and event time, as they change."""

    def __init__(self) -> None:
        self.current: Record | None = None
        self.time: float | None = None

    def activate(self, record: Record | None) -> None:
        self.current = record

    @contextmanager
    def at(self, ts: float) -> Iterator[None]:
        self.time = ts
        try:
            yield
        finally:
            self.time = None


class LoggedDict(MutableMapping[Any, Any]):
    """A dict that logs each write with the record current at the time."""

    def __init__(self, recorder: Recorder, fail_on: Any = None) -> None:
        self.data: dict[Any, Any] = {}
        self.writes: list[tuple[Any, Record | None]] = []
        self.recorder = recorder
        self.fail_on = fail_on

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        if key == self.fail_on:
            raise OSError("disk full")
        self.writes.append((key, self.recorder.current))
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class LoggedWindowStore(DictWindowStore):
    """A window store that checks each put is made at an event time inside its window."""

    def __init__(self, size: int, recorder: Recorder) -> None:
        super().__init__(size, LoggedDict(recorder))
        self.recorder = recorder

    def put(self, event_id: str, window: Window, counts: Any) -> None:
        assert self.recorder.time is not None and window.contains(self.recorder.time)
        super().put(event_id, window, counts)


class LoggedSeenStore(DictSeenStore):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(set())
        self.recorder = recorder
        self.writes: list[tuple[str, Record | None]] = []

    def remember(self, fact: SaleFact) -> None:
        self.writes.append((fact.fact_id, self.recorder.current))
        super().remember(fact)


def make_batched(
    recorder: Recorder, fail_on: Any = None
) -> tuple[BatchedAnalytics, LoggedDict, dict[int, LoggedWindowStore], LoggedSeenStore]:
    totals = LoggedDict(recorder, fail_on=fail_on)
    windows = {size: LoggedWindowStore(size, recorder) for size in (10, 60)}
    seen = LoggedSeenStore(recorder)
    batched = BatchedAnalytics(
        totals, windows, seen, expires, cursor=BatchCursor(recorder.activate), at=recorder.at
    )
    return batched, totals, windows, seen


def partition_of(event_id: str) -> int:
    return int(event_id[-1]) % 2


def random_facts(seed: int, n: int) -> list[SaleFact]:
    """Facts of 4 events over 3 minutes, roughly in time order, some late and some repeated."""
    rng = random.Random(seed)
    facts: list[SaleFact] = []
    for i in range(n):
        if facts and rng.random() < 0.1:
            facts.append(rng.choice(facts))  # a redelivered record
            continue
        kind = rng.choice(list(FactKind))
        ts = T0 + i * 0.4 - (rng.random() * 400 if rng.random() < 0.05 else 0)
        facts.append(
            SaleFact(
                f"f{i}",
                f"ev{rng.randrange(4)}",
                kind,
                rng.randint(1, 4),
                ts,
                rng.randint(0, 5000),
                "sold_out" if kind is FactKind.REJECTED else None,
            )
        )
    return facts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_count_exactly_what_fact_by_fact_counts(seed: int) -> None:
    facts = random_facts(seed, 400)
    one_by_one = AnalyticsProcessor(
        {},
        {10: DictWindowStore(10, {}), 60: DictWindowStore(60, {})},
        DictSeenStore(set()),
        expires,
    )
    labels = [one_by_one.handle(f).duplicate for f in facts]
    recorder = Recorder()
    batched, totals, windows, seen = make_batched(recorder)
    batch_labels = []
    for start in range(0, len(facts), 37):
        for f in facts[start : start + 37]:
            batch_labels.append(batched.count(f, Record(partition_of(f.event_id))).duplicate)
        batched.flush()

    assert batch_labels == labels
    assert any(labels)  # the redelivered facts were caught, within and across batches
    assert totals.data == one_by_one.totals
    for size, store in windows.items():
        reference = one_by_one.windows[size]
        assert isinstance(reference, DictWindowStore)
        assert store.data.data == reference.data
    assert seen.ids == {f.fact_id for f in facts}


def test_each_totals_and_window_key_is_written_once_per_batch_in_its_records_context() -> None:
    recorder = Recorder()
    batched, totals, windows, seen = make_batched(recorder)
    facts = [
        SaleFact(f"f{i}", f"ev{i % 2}", FactKind.RESERVED, 1, T0 + i * 0.01, 100) for i in range(50)
    ]
    records = [Record(partition_of(f.event_id)) for f in facts]
    for f, record in zip(facts, records, strict=True):
        batched.count(f, record)
    assert totals.writes == [] and seen.writes == []  # nothing written before the flush

    written = batched.flush()

    assert sorted(totals.writes, key=str) == [("ev0", Record(0)), ("ev1", Record(1))]
    for store in windows.values():
        assert sorted(store.data.writes, key=str) == sorted(
            [
                (("ev0", Window(T0, store.size).start), Record(0)),
                (("ev1", Window(T0, store.size).start), Record(1)),
            ],
            key=str,
        )
    assert seen.writes == [(f.fact_id, r) for f, r in zip(facts, records, strict=True)]
    assert written == 2 + 2 * 2 + 50
    assert recorder.current is None  # no record stays Faust's current event after the batch


def test_a_failed_write_drops_the_batch_and_the_next_batch_starts_clean() -> None:
    recorder = Recorder()
    batched, totals, _, seen = make_batched(recorder, fail_on="ev0")
    batched.count(SaleFact("f1", "ev0", FactKind.RESERVED, 2, T0, 100), Record(0))
    with pytest.raises(OSError):
        batched.flush()
    assert seen.ids == set()  # the fact is not remembered: read again, it counts
    assert recorder.current is None

    totals.fail_on = None
    again = batched.count(SaleFact("f1", "ev0", FactKind.RESERVED, 2, T0, 100), Record(0))
    batched.flush()
    assert not again.duplicate
    sales = batched.processor.sales("ev0")
    assert sales is not None and sales.totals.reserved == 2


@dataclass
class FakeMessage:
    value: Any
    topic: str = "reservations"
    partition: int = 0
    offset: int = 0

    @property
    def tp(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass
class FakeEvent:
    message: FakeMessage


def outcome(event_id: str, request_id: str) -> bytes:
    reserved = SeatsReserved(
        request_id=request_id,
        event_id=event_id,
        user_id="u1",
        reservation_id=f"h-{request_id}",
        quantity=2,
        amount_cents=900,
        expires_at_ms=1,
    )
    return encode(Envelope.new(reserved, source="test"))


async def test_the_agent_labels_each_record_and_drops_a_batch_it_cannot_write() -> None:
    recorder = Recorder()
    batched, totals, _, _ = make_batched(recorder)
    first = outcome("ev0", "r1")
    captured = PaymentCaptured(
        request_id="r2",
        event_id="ev0",
        user_id="u1",
        reservation_id="h",
        amount_cents=1,
        payment_id="p",
    )
    events = [
        FakeEvent(FakeMessage(first)),
        FakeEvent(FakeMessage(first, offset=1)),  # the same outcome again
        FakeEvent(FakeMessage(encode(Envelope.new(captured, source="test")), offset=2)),
        FakeEvent(FakeMessage(b"{not json", offset=3)),
    ]

    labels = await count_batch(events, batched)  # type: ignore[arg-type]

    assert labels == Counter(counted=1, duplicate=1, ignored=1, unreadable=1)
    sales = batched.processor.sales("ev0")
    assert sales is not None and sales.totals.reserved == 2

    totals.fail_on = "ev1"
    failed = [FakeEvent(FakeMessage(outcome("ev1", f"r{i}"), offset=i)) for i in range(3)]
    assert await count_batch(failed, batched) == Counter(error=3)  # type: ignore[arg-type]
    assert batched.processor.sales("ev1") is None
