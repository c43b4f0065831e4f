"""Values, invariants, ids and their dict round trips."""

from __future__ import annotations

import uuid
from dataclasses import FrozenInstanceError

import pytest

from eventpro.domain import (
    EventInventory,
    Hold,
    InventoryInvariantViolated,
    Reason,
    RequestStatus,
    Status,
    TicketRequest,
    check_inventory,
    request_key,
    reservation_id_for,
    ticket_ids_for,
    user_key,
)
from eventpro.exceptions import EventProError

INV = EventInventory("ev-1", "Concert", 10, 100, 4, held=3, sold=2, created_at_ms=5)


@pytest.mark.parametrize(("held", "sold"), [(-1, 0), (0, -1), (6, 5), (11, 0)])
def test_check_inventory_rejects_impossible_counters(held: int, sold: int) -> None:
    inv = EventInventory("ev-1", "Concert", 10, 100, 4, held=held, sold=sold)
    with pytest.raises(InventoryInvariantViolated, match="rebuild the inventory table"):
        check_inventory(inv)


def test_check_inventory_accepts_full_event() -> None:
    full = EventInventory("ev-1", "Concert", 10, 100, 4, held=4, sold=6)
    assert check_inventory(full) is full


def test_domain_errors_share_the_root() -> None:
    assert issubclass(InventoryInvariantViolated, EventProError)


def test_values_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        INV.held = 0  # type: ignore[misc]


def test_inventory_dict_round_trip() -> None:
    data = INV.to_dict()
    assert data["available"] == 5
    assert EventInventory.from_dict(data) == INV


def test_hold_dict_round_trip() -> None:
    hold = Hold("res", "req", "ev", "u", 2, 200, 99)
    assert Hold.from_dict(hold.to_dict()) == hold


def test_status_dict_round_trip_uses_plain_strings() -> None:
    status = RequestStatus(
        "req", "ev", "u", 2, Status.FAILED, Reason.EXPIRED, "res", ("t1", "t2"), "c", 7, True
    )
    data = status.to_dict()
    assert data["status"] == "failed"
    assert type(data["status"]) is str
    assert data["reason"] == "expired"
    assert RequestStatus.from_dict(data) == status


def test_pending_status() -> None:
    status = RequestStatus.pending(TicketRequest("r", "e", "u", 1, "c"), now_ms=3)
    assert status.status is Status.PENDING
    assert not status.is_terminal
    assert status.correlation_id == "c"


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (Status.PENDING, False),
        (Status.RESERVED, False),
        (Status.CONFIRMED, True),
        (Status.REJECTED, True),
        (Status.FAILED, True),
    ],
)
def test_terminal_statuses(status: Status, terminal: bool) -> None:
    assert status.is_terminal is terminal


def test_ids_are_deterministic_and_distinct() -> None:
    rid = reservation_id_for("ev", "req")
    assert rid == reservation_id_for("ev", "req")
    assert rid != reservation_id_for("ev", "req2")
    assert rid != reservation_id_for("ev2", "req")
    assert uuid.UUID(rid).version == 5
    tickets = ticket_ids_for(rid, 3)
    assert tickets == ticket_ids_for(rid, 3)
    assert len(set(tickets)) == 3
    assert tickets[0] == str(uuid.uuid5(uuid.UUID(rid), "0"))


def test_table_keys() -> None:
    assert request_key("ev", "req") == "ev/req"
    assert user_key("ev", "u") == "ev/u"
