"""decode never raises anything but SchemaError, whatever the bytes."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpro.schemas import EVENT_TYPES, Envelope, SchemaError, decode

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _decode_or_schema_error(raw: bytes) -> None:
    try:
        result = decode(raw)
    except SchemaError as exc:
        assert exc.reason is not None
        assert str(exc)
    else:
        assert isinstance(result, Envelope)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes(raw: bytes) -> None:
    _decode_or_schema_error(raw)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    event_type=st.sampled_from(sorted(EVENT_TYPES)),
    version=st.one_of(st.integers(-1, 3), json_values),
    data=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(
                [
                    "event",
                    "user",
                    "qty",
                    "request_id",
                    "event_id",
                    "user_id",
                    "quantity",
                    "partition",
                ]
            ),
            json_values,
            max_size=6,
        ),
    ),
    header=st.dictionaries(
        st.sampled_from(["event_id", "occurred_at", "source", "correlation_id", "causation_id"]),
        json_values,
        max_size=5,
    ),
)
def test_envelope_shaped_garbage(
    event_type: str, version: object, data: object, header: dict[str, object]
) -> None:
    _decode_or_schema_error(
        orjson.dumps({"event_type": event_type, "schema_version": version, "data": data, **header})
    )
