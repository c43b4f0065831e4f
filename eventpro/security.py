"""Kafka client security (SASL PLAIN/SCRAM, TLS) from settings, for Faust and plain aiokafka.

Nothing secret lives in the repository or the image: passwords come from the environment
(``EVENTPRO_KAFKA_SASL_PASSWORD``) or, preferably, from a mounted file
(``EVENTPRO_KAFKA_SASL_PASSWORD_FILE``, e.g. a Docker or Kubernetes secret). A setting that
cannot work (SASL without a user, a CA file that does not exist) fails when the app is built,
with a message naming the variable to fix, instead of as an opaque broker disconnect later.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import faust
from faust.types.auth import CredentialsT

from eventpro.exceptions import EventProError
from eventpro.settings import Settings

__all__ = (
    "SecurityConfigError",
    "aiokafka_security_kwargs",
    "kafka_credentials",
    "kafka_ssl_context",
    "read_secret",
)

logger = logging.getLogger(__name__)


class SecurityConfigError(EventProError):
    """Security settings that cannot work; the message names the variable to fix."""


def read_secret(value: str, file: str, *, env_name: str) -> str:
    """A secret given inline (``value``) or in ``file``; ``""`` when neither is set.

    The file's trailing newline is dropped (``echo`` adds one).

    :raises SecurityConfigError: both are set, or the file cannot be read.
    """
    if value and file:
        raise SecurityConfigError(
            f"both {env_name} and {env_name}_FILE are set: keep only one (prefer the file)"
        )
    if not file:
        return value
    try:
        return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SecurityConfigError(
            f"cannot read {env_name}_FILE={file!r}: {exc.strerror or exc}; "
            "mount the secret there or unset the variable"
        ) from None


def _existing(path: str, env_name: str) -> str | None:
    if not path:
        return None
    if not Path(path).is_file():
        raise SecurityConfigError(f"{env_name}={path!r} is not a readable file")
    return path


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for ``SSL`` / ``SASL_SSL``; ``None`` for the plaintext protocols.

    Verifies the brokers' certificates against ``kafka_ssl_cafile`` (or the system CAs) and
    presents a client certificate when ``kafka_ssl_certfile`` is set (mutual TLS).
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = _existing(settings.kafka_ssl_cafile, "EVENTPRO_KAFKA_SSL_CAFILE")
    certfile = _existing(settings.kafka_ssl_certfile, "EVENTPRO_KAFKA_SSL_CERTFILE")
    keyfile = _existing(settings.kafka_ssl_keyfile, "EVENTPRO_KAFKA_SSL_KEYFILE")
    if keyfile and not certfile:
        raise SecurityConfigError(
            "EVENTPRO_KAFKA_SSL_KEYFILE is set without EVENTPRO_KAFKA_SSL_CERTFILE"
        )
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except ssl.SSLError as exc:
        raise SecurityConfigError(
            f"EVENTPRO_KAFKA_SSL_CAFILE={cafile!r} holds no usable PEM certificate: {exc}"
        ) from None
    context.check_hostname = settings.kafka_ssl_check_hostname
    if not settings.kafka_ssl_check_hostname:
        logger.warning("Kafka TLS hostname check is off (EVENTPRO_KAFKA_SSL_CHECK_HOSTNAME)")
    if certfile:
        password = read_secret(
            "", settings.kafka_ssl_key_password_file, env_name="EVENTPRO_KAFKA_SSL_KEY_PASSWORD"
        )
        try:
            context.load_cert_chain(certfile, keyfile, password=password or None)
        except ssl.SSLError as exc:
            raise SecurityConfigError(
                f"cannot load the client certificate {certfile!r} / key {keyfile!r}: {exc}"
            ) from None
    return context


def kafka_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for ``settings``; ``None`` means plaintext.

    :raises SecurityConfigError: a SASL protocol without user or password, or bad TLS files.
    """
    protocol = settings.kafka_security_protocol
    context = kafka_ssl_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = read_secret(
            settings.kafka_sasl_password,
            settings.kafka_sasl_password_file,
            env_name="EVENTPRO_KAFKA_SASL_PASSWORD",
        )
        if not settings.kafka_sasl_username or not password:
            raise SecurityConfigError(
                f"EVENTPRO_KAFKA_SECURITY_PROTOCOL={protocol} needs EVENTPRO_KAFKA_SASL_USERNAME "
                "and EVENTPRO_KAFKA_SASL_PASSWORD (or EVENTPRO_KAFKA_SASL_PASSWORD_FILE)"
            )
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def aiokafka_security_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer/Consumer/AdminClient``, the same as Faust's."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    kwargs: dict[str, Any] = credentials_to_aiokafka_auth(kafka_credentials(settings))
    return kwargs
