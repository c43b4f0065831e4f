"""The Faust app: producer settings reach the Kafka client; EVENTPRO_AGENTS picks agents."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from eventpro.app import PRODUCER_LINGER_SECONDS, PRODUCER_MAX_BATCH_BYTES, app, create_app
from eventpro.settings import Settings


def test_the_kafka_producer_gets_large_batches_and_a_linger() -> None:
    settings = app.producer._settings_default()

    assert settings["max_batch_size"] == PRODUCER_MAX_BATCH_BYTES
    assert settings["max_batch_size"] <= settings["max_request_size"]
    assert settings["linger_ms"] == int(PRODUCER_LINGER_SECONDS * 1000)


def test_eventpro_agents_names_known_agent_groups_only() -> None:
    assert Settings(agents=" inventory , payments").agents == "inventory,payments"
    with pytest.raises(ValidationError, match="unknown agents \\['inventroy'\\]"):
        Settings(agents="inventroy")


def test_a_worker_runs_only_the_agents_eventpro_agents_names(tmp_path: Path) -> None:
    settings = Settings(app_id="agents-test", agents="inventory,retry", data_dir=tmp_path)
    new_app = create_app(settings)
    topic = new_app.topic("in")
    names = (
        "eventpro.agents.inventory",
        "eventpro.agents.payments",
        "eventpro.agents.retry.payments-retry-1s",
        "eventpro.agents.analytics",
    )
    for name in names:

        async def process(stream: faust.StreamT) -> None:
            async for _ in stream:
                pass

        new_app.agent(topic, name=name)(process)

    new_app._drop_agents_not_run()

    assert sorted(new_app.agents) == [
        "eventpro.agents.inventory",
        "eventpro.agents.retry.payments-retry-1s",
    ]
    assert Settings().runs_agent("eventpro.agents.analytics")  # empty = every agent
