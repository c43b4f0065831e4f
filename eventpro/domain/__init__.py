"""EventPro's functional core: seat inventory decisions as pure functions over frozen values.

No I/O and no Faust here. An agent loads the current values from its tables, calls one
function, writes back what the result says changed and emits the matching events:

- :func:`create_event` (``EventCreated``) -> :class:`EventCreation`
- :func:`decide_request` (``TicketRequested``) -> :class:`Decision`
  (``SeatsReserved`` | ``RequestRejected``)
- :func:`confirm_hold` (``PaymentCaptured``) -> :class:`SagaResult`
  (``OrderConfirmed`` | ``SeatsReleased`` + ``RefundRequested``)
- :func:`release_hold` (``PaymentDeclined`` or an expired hold) -> :class:`SagaResult`
  (``SeatsReleased``)
- :func:`expire_holds` (``HoldExpiryTick``) -> the holds to release

State per table: :class:`EventInventory` by ``event_id``; :class:`Hold` by
``reservation_id``; :class:`RequestStatus` by :func:`request_key`; the user's ticket count
(``int``) by :func:`user_key`. Ids are deterministic (:func:`reservation_id_for`,
:func:`ticket_ids_for`), so replaying a record reproduces the same ids.
"""

from __future__ import annotations

from eventpro.domain.catalog import CreateKind, EventCreation, create_event, validate_event_spec
from eventpro.domain.errors import (
    DomainError,
    EventSpecConflict,
    InvalidRequest,
    InventoryInvariantViolated,
    UnknownEvent,
)
from eventpro.domain.ids import (
    EVENTPRO_NAMESPACE,
    request_key,
    reservation_id_for,
    ticket_ids_for,
    user_key,
    uuid5_str,
)
from eventpro.domain.model import (
    REJECTION_REASONS,
    RELEASE_REASONS,
    TERMINAL_STATUSES,
    CreateEvent,
    EventInventory,
    Hold,
    Payment,
    Reason,
    RequestStatus,
    Status,
    TicketRequest,
    check_inventory,
)
from eventpro.domain.reservations import Decision, DecisionKind, decide_request
from eventpro.domain.saga import (
    Refund,
    SagaKind,
    SagaResult,
    adjust_user_tickets,
    confirm_hold,
    expire_holds,
    release_hold,
    status_from_hold,
)

__all__ = (
    "EVENTPRO_NAMESPACE",
    "REJECTION_REASONS",
    "RELEASE_REASONS",
    "TERMINAL_STATUSES",
    "CreateEvent",
    "CreateKind",
    "Decision",
    "DecisionKind",
    "DomainError",
    "EventCreation",
    "EventInventory",
    "EventSpecConflict",
    "Hold",
    "InvalidRequest",
    "InventoryInvariantViolated",
    "Payment",
    "Reason",
    "Refund",
    "RequestStatus",
    "SagaKind",
    "SagaResult",
    "Status",
    "TicketRequest",
    "UnknownEvent",
    "adjust_user_tickets",
    "check_inventory",
    "confirm_hold",
    "create_event",
    "decide_request",
    "expire_holds",
    "release_hold",
    "request_key",
    "reservation_id_for",
    "status_from_hold",
    "ticket_ids_for",
    "user_key",
    "uuid5_str",
    "validate_event_spec",
)
