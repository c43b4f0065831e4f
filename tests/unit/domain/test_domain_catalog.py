"""create_event: created once, idempotent on the same spec, conflicting specs rejected."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eventpro.domain import (
    CreateEvent,
    CreateKind,
    EventInventory,
    EventSpecConflict,
    create_event,
)

CMD = CreateEvent(event_id="ev-1", name="Concert", capacity=100, price_cents=2500, max_per_user=4)


def test_creates_event_with_empty_counters() -> None:
    result = create_event(None, CMD, now_ms=1_000)
    assert result.kind is CreateKind.CREATED
    assert result.changed
    assert result.inventory == EventInventory(
        event_id="ev-1",
        name="Concert",
        capacity=100,
        price_cents=2500,
        max_per_user=4,
        held=0,
        sold=0,
        created_at_ms=1_000,
    )
    assert result.inventory.available == 100


def test_same_spec_again_is_a_no_op_that_keeps_counters() -> None:
    existing = EventInventory("ev-1", "Concert", 100, 2500, 4, held=3, sold=5, created_at_ms=1)
    result = create_event(existing, CMD, now_ms=9_999)
    assert result.kind is CreateKind.UNCHANGED
    assert not result.changed
    assert result.inventory is existing
    result.raise_for_conflict()


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Other"},
        {"capacity": 101},
        {"price_cents": 1},
        {"max_per_user": 2},
    ],
)
def test_different_spec_is_a_conflict_and_first_spec_wins(changes: dict[str, object]) -> None:
    existing = create_event(None, CMD, now_ms=1).inventory
    other = replace(CMD, **changes)
    result = create_event(existing, other, now_ms=2)
    assert result.kind is CreateKind.CONFLICT
    assert result.inventory is existing
    assert "already exists" in result.detail
    with pytest.raises(EventSpecConflict, match="use another event_id"):
        result.raise_for_conflict()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"capacity": 0}, "capacity"),
        ({"price_cents": -1}, "price_cents"),
        ({"max_per_user": 0}, "max_per_user"),
        ({"name": "  "}, "name"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "a/b"}, "event_id"),
    ],
)
def test_invalid_spec_is_reported_and_changes_nothing(
    changes: dict[str, object], message: str
) -> None:
    cmd = replace(CMD, **changes)
    result = create_event(None, cmd, now_ms=1)
    assert result.kind is CreateKind.INVALID
    assert result.inventory is None
    assert not result.changed
    assert message in result.detail
