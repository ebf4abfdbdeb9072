"""The base of every settings class, and the settings every flowguard process reads.

:class:`FlowguardSettings` is the one base: frozen, read from the environment, unknown variables
ignored, and no input echoed in errors (a malformed value may be a secret). Each subclass sets
its own prefix: ``FLOWGUARD_`` (the worker, the CLI and the bridge), ``FLOWGUARD_API_``,
``FLOWGUARD_ACTIONS_``.

:class:`ProcessSettings` holds what the worker, the CLI and the bridge all read from the same
variables: where Kafka is and how to reach it securely (``FLOWGUARD_KAFKA_*``, the names Kafka
users know: ``security.protocol``, ``sasl.mechanism``, ``ssl.truststore``...), the topics'
prefix, the health port and the log format. A bad combination (SASL without a username, a CA
file that is not there) is refused when the settings are read, naming the variable.
:mod:`flowguard.kafka_security` turns them into client options.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class FlowguardSettings(BaseSettings):
    """Base of every settings class: one frozen object per process, read from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="FLOWGUARD_", frozen=True, extra="ignore", hide_input_in_errors=True
    )


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")


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
        _needs(SASL_PROTOCOLS, info, value, required=True)
        return value

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        _needs(TLS_PROTOCOLS, info, value, required=False)
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"cannot load a PEM CA certificate from it: {exc}") from None
        return value

    @field_validator("kafka_ssl_keyfile")
    @classmethod
    def _key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        _needs(TLS_PROTOCOLS, info, value, required=False)
        return value

    @field_validator("kafka_ssl_certfile")
    @classmethod
    def _cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        _needs(TLS_PROTOCOLS, info, value, required=False)
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
        if self.kafka_security_protocol in SASL_PROTOCOLS:
            parts.append(f"{self.kafka_sasl_mechanism} as {self.kafka_sasl_username}")
        if self.kafka_security_protocol in TLS_PROTOCOLS and self.kafka_ssl_certfile is not None:
            parts.append("client certificate")
        return ", ".join(parts)

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL and SASL_SSL (None for the others), read from the files now:
        a renewed certificate is picked up by the next client."""
        if self.kafka_security_protocol not in TLS_PROTOCOLS:
            return None
        # The standard library's defaults (what aiokafka's create_ssl_context builds too, without
        # its three INFO lines per client): TLS 1.2+, the chain verified, the host checked.
        cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        if self.kafka_ssl_certfile is not None:
            context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        context.check_hostname = self.kafka_ssl_check_hostname
        return context


class ProcessSettings(FlowguardSettings, KafkaSecuritySettings):
    """What the worker, the CLI and the bridge all read: ``FLOWGUARD_<NAME>``."""

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    topic_prefix: str = Field(
        default="flowguard",
        description="Prefix of every flowguard topic: <prefix>.events, <prefix>.commands, ...",
    )
    kafka_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Deadline for one Kafka request (metadata, produce)."
    )
    health_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of /healthz, /readyz and /metrics (worker and bridge); unset: none "
        "served (the API serves /metrics on its own port).",
    )  # fmt: skip
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object per line (docs/operations.md)."
    )


def setting_problem(exc: ValidationError, prefix: str = "FLOWGUARD_") -> str:
    """A settings error as a user sees it: the variable to fix and why (no input echoed: it may
    be a secret)."""
    error = exc.errors(include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    return f"{prefix}{field.upper()}: {error['msg']}"
