"""docker-compose.yml (and the SASL overlay) agree with EventPro's code and the issue's promises.

No Docker engine runs here, so the file is parsed: services, images, KRaft quorum,
replication, topic-init, workers, monitoring wiring, healthchecks, and every ``EVENTPRO_*``
variable checked against :class:`~eventpro.settings.Settings`.
"""

from __future__ import annotations

import re
from typing import Any

import faust
import pytest
from deploy_files import COMPOSE, ROOT, SASL_OVERLAY, interpolate, load_yaml

from eventpro.security import kafka_credentials
from eventpro.settings import Settings
from eventpro.topics import all_topics

KAFKA = ("kafka-1", "kafka-2", "kafka-3")
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def sasl_overlay() -> dict[str, Any]:
    return load_yaml(SASL_OVERLAY)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services running the EventPro image built from the Dockerfile."""
    return {name: s for name, s in services.items() if s.get("build") == "."}


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {key: interpolate(value) for key, value in (service.get("environment") or {}).items()}


def _settings(service: dict[str, Any]) -> Settings:
    env = _env(service)
    fields = {key.removeprefix("EVENTPRO_").lower(): v for key, v in env.items()}
    return Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})


def _eventpro_vars(document: dict[str, Any]) -> dict[str, set[str]]:
    return {
        name: {key for key in (service.get("environment") or {}) if key.startswith("EVENTPRO_")}
        for name, service in document["services"].items()
    }


def _host_path(volume: str) -> str | None:
    source = volume.split(":", 1)[0]
    return source if source.startswith(".") else None


def test_services(services: dict[str, dict[str, Any]], workers: dict[str, Any]) -> None:
    assert set(KAFKA) | {"topic-init", "prometheus", "grafana"} <= set(services)
    assert len(workers) >= 2


@pytest.mark.parametrize("path", [COMPOSE, SASL_OVERLAY])
def test_every_eventpro_variable_is_a_settings_field(path: Any) -> None:
    known = {f"EVENTPRO_{name.upper()}" for name in Settings.model_fields}
    for service, names in _eventpro_vars(load_yaml(path)).items():
        assert names <= known, f"{path.name} {service}: not in Settings: {names - known}"


def test_no_secret_is_written_in_the_files() -> None:
    for path in (COMPOSE, SASL_OVERLAY):
        for name, service in load_yaml(path)["services"].items():
            for key, value in (service.get("environment") or {}).items():
                if any(word in key for word in SECRET_WORDS) and not key.endswith("_FILE"):
                    assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), (
                        f"{path.name} {name}: {key} must come from the operator's "
                        "environment as ${VAR:?message}, not be written in the file"
                    )


def test_kafka_brokers_form_a_kraft_cluster(services: dict[str, dict[str, Any]]) -> None:
    node_ids = set()
    cluster_ids = set()
    for name in KAFKA:
        service = services[name]
        assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", service["image"])
        env = _env(service)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = {
            v.split("@")[1].split(":")[0] for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        }
        assert voters == set(KAFKA)
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert service["hostname"] == name
        node_ids.add(env["KAFKA_NODE_ID"])
        cluster_ids.add(env["CLUSTER_ID"])
        volume = service["volumes"][0]
        assert volume == f"{name}-data:{env['KAFKA_LOG_DIRS']}"
        assert "kafka-broker-api-versions.sh" in " ".join(service["healthcheck"]["test"])
    assert node_ids == {"1", "2", "3"}
    assert len(cluster_ids) == 1


def test_replication_three_and_min_insync_two(
    services: dict[str, dict[str, Any]], workers: dict[str, dict[str, Any]]
) -> None:
    for name in KAFKA:
        env = _env(services[name])
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    init = _env(services["topic-init"])
    assert init["EVENTPRO_REPLICATION_FACTOR"] == "3"
    assert init["MIN_INSYNC_REPLICAS"] == "2"
    for worker in workers.values():
        # Changelog topics are created by the workers with this factor.
        assert _settings(worker).replication_factor == 3


def test_topic_init_runs_after_the_brokers_and_before_the_workers(
    services: dict[str, dict[str, Any]], workers: dict[str, dict[str, Any]]
) -> None:
    init = services["topic-init"]
    assert init["image"] == services["kafka-1"]["image"]
    assert {name: dep["condition"] for name, dep in init["depends_on"].items()} == {
        name: "service_healthy" for name in KAFKA
    }
    script = init["entrypoint"][-1]
    (mount,) = [v for v in init["volumes"] if script.startswith(v.split(":")[1])]
    local = ROOT / mount.split(":")[0] / script.removeprefix(mount.split(":")[1]).lstrip("/")
    assert local.is_file(), f"{local} is not in the repository"
    bootstrap = set(_env(init)["KAFKA_BOOTSTRAP"].split(","))
    assert bootstrap == {f"{name}:9092" for name in KAFKA}
    for worker in workers.values():
        assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
        assert _env(worker)["EVENTPRO_PARTITIONS"] == _env(init)["EVENTPRO_PARTITIONS"]


def test_workers(workers: dict[str, dict[str, Any]]) -> None:
    ports = set()
    data_volumes = set()
    for name, worker in workers.items():
        settings = _settings(worker)
        assert worker["hostname"] == name
        assert settings.web_host == "0.0.0.0"
        assert settings.web_advertised_host == name
        hosts = {url.split("://")[-1] for url in settings.broker_url.split(";")}
        assert hosts == {f"{kafka}:9092" for kafka in KAFKA}
        (published,) = worker["ports"]
        assert published == f"127.0.0.1:{settings.web_port}:{settings.web_port}"
        ports.add(settings.web_port)
        (volume,) = worker["volumes"]
        source, target = volume.split(":")
        assert target == str(settings.data_dir)
        data_volumes.add(source)
        assert settings.rate_limit_per_user > 0
        assert worker["stop_grace_period"]
    assert len(ports) == len(workers)
    assert len(data_volumes) == len(workers)


def test_worker_healthcheck_is_health_on_its_port(workers: dict[str, dict[str, Any]]) -> None:
    for worker in workers.values():
        test = " ".join(worker["healthcheck"]["test"])
        assert "/health" in test and "EVENTPRO_WEB_PORT" in test
        assert "EVENTPRO_WEB_PORT" in worker["environment"]


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if _host_path(volume) is None:
                assert volume.split(":")[0] in declared, f"{name}: {volume}"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = _host_path(volume)
            if source is not None:
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def _mounted(service: dict[str, Any], target: str) -> str:
    """The repository path mounted at ``target`` in ``service``."""
    (source,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == target]
    return source


def test_prometheus_scrapes_every_worker(
    services: dict[str, dict[str, Any]], workers: dict[str, dict[str, Any]]
) -> None:
    prometheus = services["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v[\d.]+", prometheus["image"])
    config = load_yaml(ROOT / _mounted(prometheus, "/etc/prometheus/prometheus.yml"))
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert targets == {f"{name}:{_settings(worker).web_port}" for name, worker in workers.items()}


def test_grafana_is_provisioned_from_deploy(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert re.fullmatch(r"grafana/grafana:[\d.]+", grafana["image"])
    provisioning = ROOT / _mounted(grafana, "/etc/grafana/provisioning")
    datasources = [
        source
        for path in (provisioning / "datasources").glob("*.yml")
        for source in load_yaml(path)["datasources"]
    ]
    assert [s["url"] for s in datasources if s.get("isDefault")] == ["http://prometheus:9090"]
    (provider,) = load_yaml(provisioning / "dashboards" / "eventpro.yml")["providers"]
    dashboards = ROOT / _mounted(grafana, provider["options"]["path"])
    assert list(dashboards.glob("*.json")), f"no dashboard JSON in {dashboards}"


def test_topic_init_topics_match_the_code() -> None:
    """The script's table equals eventpro/topics.py: names, partitions, retention."""
    text = (ROOT / "deploy" / "kafka" / "create-topics.sh").read_text(encoding="utf-8")
    block = text.split('TOPICS="', 1)[1].split('"', 1)[0]
    rows = {
        name: (partitions, int(retention))
        for name, partitions, retention in (line.split() for line in block.strip().splitlines())
    }
    settings = Settings()
    expected = {
        spec.logical: (
            "$PARTITIONS" if spec.partitions == settings.partitions else str(spec.partitions),
            spec.retention_ms,
        )
        for spec in all_topics(settings)
    }
    assert rows == expected
    assert {spec.cleanup_policy for spec in all_topics(settings)} == {"delete"}


def test_sasl_overlay_gives_workers_working_credentials(
    sasl_overlay: dict[str, Any], workers: dict[str, dict[str, Any]]
) -> None:
    overlay = sasl_overlay["services"]
    assert set(workers) | {"topic-init"} | set(KAFKA) <= set(overlay)
    for name in workers:
        merged = {
            **workers[name],
            "environment": {**workers[name]["environment"], **overlay[name]["environment"]},
        }
        settings = _settings(merged)
        assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
        credentials = kafka_credentials(settings)
        assert isinstance(credentials, faust.SASLCredentials)
        jaas = overlay["kafka-1"]["environment"][
            "KAFKA_LISTENER_NAME_CLIENT_PLAIN_SASL_JAAS_CONFIG"
        ]
        assert f"user_{settings.kafka_sasl_username}=" in jaas
        assert (
            settings.kafka_sasl_mechanism
            in overlay["kafka-1"]["environment"]["KAFKA_SASL_ENABLED_MECHANISMS"]
        )
    for name in KAFKA:
        env = overlay[name]["environment"]
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"CLIENT://{name}:9092"
        assert "CLIENT:SASL_PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
