"""Deterministic ids: the fast uuid5 gives exactly the standard library's ids."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from eventpro.domain import EVENTPRO_NAMESPACE, reservation_id_for, ticket_ids_for, uuid5_str


@given(namespace=st.uuids(), name=st.text())
def test_uuid5_str_is_the_standard_uuid5(namespace: uuid.UUID, name: str) -> None:
    assert uuid5_str(namespace, name) == str(uuid.uuid5(namespace, name))


def test_ids_keep_their_published_values() -> None:
    # Changing how ids are derived would break idempotency across a rolling upgrade.
    reservation = reservation_id_for("ev1", "req1")
    assert reservation == str(uuid.uuid5(EVENTPRO_NAMESPACE, "/events/ev1/requests/req1"))
    assert ticket_ids_for(reservation, 2) == tuple(
        str(uuid.uuid5(uuid.UUID(reservation), str(i))) for i in range(2)
    )
    assert uuid.UUID(reservation).version == 5
