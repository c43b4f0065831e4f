"""Kafka client security settings -> Faust credentials and aiokafka keyword arguments."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaProducer

from eventpro.app import faust_options
from eventpro.security import (
    SecurityConfigError,
    aiokafka_security_kwargs,
    kafka_credentials,
    kafka_ssl_context,
    read_secret,
)
from eventpro.settings import Settings


def test_plaintext_by_default() -> None:
    settings = Settings()
    assert kafka_credentials(settings) is None
    assert aiokafka_security_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_options(settings)["broker_credentials"] is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(mechanism: str) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="eventpro",
        kafka_sasl_password="pw-from-env",
    )
    credentials = kafka_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == mechanism
    kwargs = aiokafka_security_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == mechanism
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "eventpro",
        "pw-from-env",
    )
    assert "pw-from-env" not in repr(settings)


def test_sasl_ssl_password_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("pw-from-file\n", encoding="utf-8")
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="eventpro",
        kafka_sasl_password_file=str(secret),
    )
    kwargs = aiokafka_security_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_plain_password"] == "pw-from-file"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    options = faust_options(settings)
    assert isinstance(options["broker_credentials"], faust.SASLCredentials)


def test_ssl_without_sasl() -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    credentials = kafka_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.context.check_hostname is False
    assert aiokafka_security_kwargs(settings)["security_protocol"] == "SSL"


def test_plaintext_ignores_tls_files() -> None:
    assert kafka_ssl_context(Settings(kafka_ssl_cafile="/nonexistent/ca.pem")) is None


def test_sasl_without_user_names_the_variables() -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="pw")
    with pytest.raises(SecurityConfigError, match="EVENTPRO_KAFKA_SASL_USERNAME"):
        kafka_credentials(settings)


def test_sasl_without_password_names_the_variables() -> None:
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u")
    with pytest.raises(SecurityConfigError, match="EVENTPRO_KAFKA_SASL_PASSWORD"):
        kafka_credentials(settings)


def test_missing_ca_file_is_reported(tmp_path: Path) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "ca"))
    with pytest.raises(SecurityConfigError, match="EVENTPRO_KAFKA_SSL_CAFILE"):
        kafka_credentials(settings)


def test_garbage_ca_file_is_reported(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate", encoding="utf-8")
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(ca))
    with pytest.raises(SecurityConfigError, match="no usable PEM"):
        kafka_credentials(settings)


def test_key_without_certificate_is_reported(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("x", encoding="utf-8")
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=str(key))
    with pytest.raises(SecurityConfigError, match="without EVENTPRO_KAFKA_SSL_CERTFILE"):
        kafka_credentials(settings)


def test_bad_client_certificate_is_reported(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not a certificate", encoding="utf-8")
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_certfile=str(cert))
    with pytest.raises(SecurityConfigError, match="client certificate"):
        kafka_credentials(settings)


def test_read_secret(tmp_path: Path) -> None:
    assert read_secret("", "", env_name="X") == ""
    assert read_secret("inline", "", env_name="X") == "inline"
    path = tmp_path / "s"
    path.write_text("in-file\r\n", encoding="utf-8")
    assert read_secret("", str(path), env_name="X") == "in-file"
    with pytest.raises(SecurityConfigError, match="X and X_FILE"):
        read_secret("inline", str(path), env_name="X")


async def test_kwargs_are_accepted_by_aiokafka() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="eventpro",
        kafka_sasl_password="pw",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers="127.0.0.1:9", **aiokafka_security_kwargs(settings)
    )
    assert producer.client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-256"


def test_advertised_host_is_the_canonical_url() -> None:
    options = faust_options(Settings(web_host="0.0.0.0", web_advertised_host="worker-1"))
    assert options["canonical_url"] == "http://worker-1:6066"
    assert options["web_bind"] == "0.0.0.0"
    assert faust_options(Settings())["canonical_url"] == "http://127.0.0.1:6066"
