"""deploy/kafka/create-topics.sh against a stub ``kafka-topics.sh`` that records its calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from deploy_files import ROOT

from eventpro.settings import Settings
from eventpro.topics import all_topics

SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"

STUB = r"""#!/bin/sh
echo "$@" >>"$STUB_LOG"
mode=""; topic=""; partitions=""
while [ $# -gt 0 ]; do
    case "$1" in
    --list) exit 0 ;;
    --create) mode=create ;;
    --describe) mode=describe ;;
    --topic) topic="$2"; shift ;;
    --partitions) partitions="$2"; shift ;;
    esac
    shift
done
if [ "$mode" = create ] && [ ! -f "$STUB_STATE/$topic" ]; then
    echo "$partitions" >"$STUB_STATE/$topic"
fi
if [ "$mode" = describe ]; then
    n="$(cat "$STUB_STATE/$topic")"
    printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\tReplicationFactor: 3\n' "$topic" "$n"
    i=0
    while [ "$i" -lt "$n" ]; do
        printf '\tTopic: %s\tPartition: %s\tLeader: 1\n' "$topic" "$i"
        i=$((i + 1))
    done
fi
"""


@pytest.fixture()
def stub(tmp_path: Path) -> dict[str, str]:
    """Environment running the script with the stub as kafka-topics.sh."""
    bin_dir = tmp_path / "bin"
    state = tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    tool = bin_dir / "kafka-topics.sh"
    tool.write_text(STUB, encoding="utf-8")
    tool.chmod(0o755)
    return {
        "PATH": os.environ["PATH"],
        "KAFKA_BIN": str(bin_dir),
        "KAFKA_BOOTSTRAP": "localhost:9092",
        "STUB_LOG": str(tmp_path / "calls.log"),
        "STUB_STATE": str(state),
        "CLIENT_PROPERTIES": str(tmp_path / "client.properties"),
        "EVENTPRO_PARTITIONS": "6",
        "EVENTPRO_TOPIC_PREFIX": "prod-",
        "EVENTPRO_REPLICATION_FACTOR": "3",
        "MIN_INSYNC_REPLICAS": "2",
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def _created(env: dict[str, str]) -> dict[str, str]:
    calls = Path(env["STUB_LOG"]).read_text(encoding="utf-8").splitlines()
    return {call.split("--topic ")[1].split()[0]: call for call in calls if " --create " in call}


def test_creates_every_topic_replicated_with_min_insync(stub: dict[str, str]) -> None:
    result = _run(stub)
    assert result.returncode == 0, result.stderr
    created = _created(stub)
    settings = Settings(partitions=6, topic_prefix="prod-")
    assert set(created) == {spec.name for spec in all_topics(settings)}
    for spec in all_topics(settings):
        call = created[spec.name]
        assert f"--partitions {spec.partitions} " in call
        assert "--replication-factor 3 " in call
        assert "--config min.insync.replicas=2 " in call
        assert f"--config retention.ms={spec.retention_ms}" in call
        assert "--if-not-exists" in call
        assert "--command-config" not in call
    assert "EventPro topics ready" in result.stdout


def test_existing_topic_with_other_partition_count_fails(stub: dict[str, str]) -> None:
    (Path(stub["STUB_STATE"]) / "prod-payments").write_text("3\n", encoding="utf-8")
    result = _run(stub)
    assert result.returncode == 1
    assert "prod-payments has 3 partitions, EventPro expects 6" in result.stderr


def test_sasl_settings_become_a_command_config(stub: dict[str, str]) -> None:
    password = Path(stub["STUB_STATE"]).parent / "kafka-password"
    password.write_text("from-a-file\n", encoding="utf-8")
    env = {
        **stub,
        "EVENTPRO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "EVENTPRO_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "EVENTPRO_KAFKA_SASL_USERNAME": "eventpro",
        "EVENTPRO_KAFKA_SASL_PASSWORD_FILE": str(password),
    }
    result = _run(env)
    assert result.returncode == 0, result.stderr
    assert all(
        f"--command-config {env['CLIENT_PROPERTIES']}" in call for call in _created(env).values()
    )
    properties = Path(env["CLIENT_PROPERTIES"]).read_text(encoding="utf-8").splitlines()
    assert "security.protocol=SASL_SSL" in properties
    assert "sasl.mechanism=SCRAM-SHA-512" in properties
    assert (
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="eventpro" password="from-a-file";'
    ) in properties
    assert oct(Path(env["CLIENT_PROPERTIES"]).stat().st_mode & 0o777) == "0o600"


def test_sasl_without_password_stops(stub: dict[str, str]) -> None:
    env = {
        **stub,
        "EVENTPRO_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "EVENTPRO_KAFKA_SASL_USERNAME": "eventpro",
    }
    result = _run(env)
    assert result.returncode != 0
    assert "EVENTPRO_KAFKA_SASL_PASSWORD" in result.stderr
    assert not Path(env["STUB_LOG"]).exists()
