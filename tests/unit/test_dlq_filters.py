"""Dead-letter filters and parsing of DLQ records (the broker side is in test_saga.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from eventpro.dlq import DeadLetterEntry, DeadLetterFilter, _entry
from eventpro.schemas import DeadLetter, Envelope, SeatsReserved, encode


def _letter(reason: str = "invalid_json", agent: str = "a", topic: str = "t") -> DeadLetter:
    return DeadLetter.from_record(
        reason=reason,
        error="boom",
        attempts=1,
        agent=agent,
        topic=topic,
        partition=0,
        offset=3,
        key=b"k",
        value=b"v",
        correlation_id="c1",
    )


def _at(offset: int, letter: DeadLetter) -> DeadLetterEntry:
    return DeadLetterEntry(0, offset, datetime(2025, 1, 1, tzinfo=UTC), letter)


def test_unset_filter_matches_everything_and_each_field_narrows() -> None:
    entry = _at(5, _letter())
    assert DeadLetterFilter().matches(entry)
    assert DeadLetterFilter(reason="invalid_json", agent="a", source_topic="t").matches(entry)
    assert DeadLetterFilter(correlation_id="c1", from_offset=5, to_offset=5).matches(entry)
    assert not DeadLetterFilter(reason="retries_exhausted").matches(entry)
    assert not DeadLetterFilter(agent="b").matches(entry)
    assert not DeadLetterFilter(source_topic="other").matches(entry)
    assert not DeadLetterFilter(correlation_id="c2").matches(entry)
    assert not DeadLetterFilter(from_offset=6).matches(entry)
    assert not DeadLetterFilter(to_offset=4).matches(entry)


def test_entries_keep_the_original_bytes_and_skip_foreign_records() -> None:
    letter = _letter()
    entry = _entry(0, 9, encode(Envelope.new(letter, source="t")))
    assert entry is not None and entry.offset == 9
    assert entry.letter.original() == b"v" and entry.letter.original_key() == b"k"
    assert "invalid_json agent=a attempts=1 from=t[0]@3" in entry.summary()
    assert _entry(0, 1, b"garbage") is None
    other = SeatsReserved(
        reservation_id="r",
        request_id="q",
        event_id="e",
        user_id="u",
        quantity=1,
        amount_cents=1,
        expires_at_ms=1,
    )
    assert _entry(0, 2, encode(Envelope.new(other, source="t"))) is None
