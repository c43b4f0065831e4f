"""The Faust app's producer settings reach the Kafka client."""

from __future__ import annotations

from eventpro.app import PRODUCER_LINGER_SECONDS, PRODUCER_MAX_BATCH_BYTES, app


def test_the_kafka_producer_gets_large_batches_and_a_linger() -> None:
    settings = app.producer._settings_default()

    assert settings["max_batch_size"] == PRODUCER_MAX_BATCH_BYTES
    assert settings["max_batch_size"] <= settings["max_request_size"]
    assert settings["linger_ms"] == int(PRODUCER_LINGER_SECONDS * 1000)
