"""How every flowguard Kafka client authenticates and encrypts: one set of settings, one adapter.

The names are the ones Kafka users know (``security.protocol``, ``sasl.mechanism``,
``ssl.truststore``...), as ``FLOWGUARD_KAFKA_*`` variables. :class:`KafkaSecuritySettings` is
mixed into both :class:`flowguard.settings.Settings` and the bridge's settings, so the worker,
the API, the CLI and the bridge read the same variables with the same checks. A bad combination
(SASL without a username, a CA file that is not there) is refused when the settings are read,
naming the variable. :func:`client_options` turns them into aiokafka keyword arguments, and
:func:`faust_credentials` into Faust's ``broker_credentials``; nothing else builds either.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

import faust
from pydantic import BaseModel, Field, FilePath, SecretStr, ValidationInfo, field_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")


def _needs(protocols: tuple[str, ...], info: ValidationInfo, value: object, required: bool) -> None:
    """Refuse a value the protocol does not use (a typo would connect in clear without it),
    and a missing one it requires."""
    protocol = info.data.get("kafka_security_protocol")
    if protocol is None:  # the protocol itself was refused; its error is the one to show
        return
    wanted = " or ".join(protocols)
    if value is not None and protocol not in protocols:
        raise ValueError(f"only used when FLOWGUARD_KAFKA_SECURITY_PROTOCOL is {wanted}")
    if value is None and required and protocol in protocols:
        raise ValueError(f"required when FLOWGUARD_KAFKA_SECURITY_PROTOCOL is {protocol}")


class KafkaSecuritySettings(BaseModel):
    """The ``FLOWGUARD_KAFKA_*`` security settings; the order of the fields is the order of
    the checks (each may look at the ones before it)."""

    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="How clients talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        validate_default=True,
        description="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); required with SASL_*.",
    )
    kafka_sasl_username: str | None = Field(
        default=None, min_length=1, validate_default=True, description="SASL username."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, validate_default=True, description="SASL password (never logged)."
    )
    kafka_ssl_cafile: FilePath | None = Field(
        default=None,
        description="PEM CA bundle that signed the brokers' certificates (default: the system's).",
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        default=None, description="PEM private key of the client certificate (mTLS)."
    )
    kafka_ssl_certfile: FilePath | None = Field(
        default=None,
        description="PEM client certificate (mTLS); its key in KAFKA_SSL_KEYFILE or the same file.",
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that a broker's certificate names the host connected to."
    )

    @field_validator("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _sasl_only(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, SecretStr) and not value.get_secret_value():
            raise ValueError("must not be empty")
        _needs(_SASL, info, value, required=True)
        return value

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        _needs(_TLS, info, value, required=False)
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"cannot load a PEM CA certificate from it: {exc}") from None
        return value

    @field_validator("kafka_ssl_keyfile")
    @classmethod
    def _key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        _needs(_TLS, info, value, required=False)
        return value

    @field_validator("kafka_ssl_certfile")
    @classmethod
    def _cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        _needs(_TLS, info, value, required=False)
        if value is None:
            if info.data.get("kafka_ssl_keyfile") is not None:
                raise ValueError("required when FLOWGUARD_KAFKA_SSL_KEYFILE is set")
            return value
        keyfile = info.data.get("kafka_ssl_keyfile")
        try:
            ssl.create_default_context().load_cert_chain(value, keyfile)
        except (ssl.SSLError, OSError) as exc:
            # The reason is OpenSSL's ("PEM lib", "key values mismatch"): never the key itself.
            raise ValueError(f"cannot load the client certificate and key: {exc}") from None
        return value

    def kafka_security_summary(self) -> str:
        """How this process connects, for ``doctor`` and logs: never the password."""
        parts: list[str] = [self.kafka_security_protocol]
        if self.kafka_security_protocol in _SASL:
            parts.append(f"{self.kafka_sasl_mechanism} as {self.kafka_sasl_username}")
        if self.kafka_security_protocol in _TLS and self.kafka_ssl_certfile is not None:
            parts.append("client certificate")
        return ", ".join(parts)

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL and SASL_SSL (None for the others), read from the files now:
        a renewed certificate is picked up by the next client."""
        if self.kafka_security_protocol not in _TLS:
            return None
        # The standard library's defaults (what aiokafka's create_ssl_context builds too, without
        # its three INFO lines per client): TLS 1.2+, the chain verified, the host checked.
        cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        if self.kafka_ssl_certfile is not None:
            context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        context.check_hostname = self.kafka_ssl_check_hostname
        return context


def client_options(settings: KafkaSecuritySettings | None = None) -> dict[str, Any]:
    """The aiokafka keyword arguments (producer, consumer, admin) for ``settings``; by default
    this process's settings, for the helpers that are handed only a bootstrap address."""
    if settings is None:
        from flowguard.settings import get_settings  # here: flowguard.settings imports this module

        settings = get_settings()
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = settings.kafka_ssl_context()
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol in _SASL:
        assert settings.kafka_sasl_password is not None  # checked by the settings
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def faust_credentials(settings: KafkaSecuritySettings) -> faust.types.auth.CredentialsT | None:
    """Faust's ``broker_credentials`` for ``settings`` (None: PLAINTEXT)."""
    context = settings.kafka_ssl_context()
    if settings.kafka_security_protocol in _SASL:
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
