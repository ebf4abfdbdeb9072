"""How every flowguard Kafka client authenticates and encrypts: one adapter.

The ``FLOWGUARD_KAFKA_*`` security settings are read and checked by
:class:`flowguard.settings_base.ProcessSettings`, the base of the worker's, the CLI's and the
bridge's settings. :func:`client_options` turns them into aiokafka keyword arguments, and
:func:`faust_credentials` into Faust's ``broker_credentials``; nothing else builds either.
"""

from __future__ import annotations

from typing import Any

import faust

from flowguard.settings_base import SASL_PROTOCOLS, KafkaSecuritySettings, ProcessSettings


def client_options(settings: KafkaSecuritySettings | None = None) -> dict[str, Any]:
    """The aiokafka keyword arguments (producer, consumer, admin) for ``settings``; by default
    this process's, read from the environment now, for the helpers that are handed only a
    bootstrap address."""
    if settings is None:
        settings = ProcessSettings()
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = settings.kafka_ssl_context()
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        assert settings.kafka_sasl_password is not None  # checked by the settings
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def faust_credentials(settings: KafkaSecuritySettings) -> faust.types.auth.CredentialsT | None:
    """Faust's ``broker_credentials`` for ``settings`` (None: PLAINTEXT)."""
    context = settings.kafka_ssl_context()
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        assert settings.kafka_sasl_password is not None  # checked by the settings
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
