"""The bridge's settings: flags of ``flowguard-bridge`` or ``FLOWGUARD_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from kombu.utils.url import maybe_sanitize_url
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from bridge.gate import CommandAuthSettings
from flowguard.errors import ConfigError
from flowguard.settings_base import ProcessSettings


class BridgeSettings(ProcessSettings, CommandAuthSettings):
    """One bridge, next to one Celery cluster. The broker URL is a secret: never logged whole
    (nor echoed in errors: the base hides input). Kafka, its security, the health port and the
    log format are every process's (:class:`~flowguard.settings_base.ProcessSettings`: same
    variables, same checks); the command signing ones are in :mod:`bridge.gate`."""

    cluster: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="This cluster's name, as workflows' `cluster` conditions know it.",
    )  # fmt: skip
    app: str | None = Field(
        default=None, min_length=1,
        description="The cluster's Celery app, as `celery -A` takes it (proj.celery:app): "
        "retries are routed by its task_routes and routers.",
    )  # fmt: skip
    config: str | None = Field(
        default=None, min_length=1,
        description="A Celery configuration module (as `celery --config`), read into the app.",
    )  # fmt: skip
    broker: SecretStr | None = Field(
        default=None,
        validate_default=True,
        description="The Celery broker URL (redis://, amqp://, ...); default: the app's own.",
    )
    queues_ttl_seconds: float = Field(
        default=10.0, gt=0, le=3600,
        description="How long the workers' active queues (checked before a retry) are cached.",
    )  # fmt: skip
    # The bridge keeps its own upper bound (300 s); the other processes take any positive value.
    kafka_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description=ProcessSettings.model_fields["kafka_timeout_seconds"].description,
    )
    kafka_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "none"
    kafka_linger_ms: int = Field(default=5, ge=0, le=10_000)
    buffer_size: int = Field(
        default=100_000, ge=1, description="Events held while Kafka is slow or down; then dropped."
    )
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    max_record_bytes: int = Field(
        default=1_000_000, ge=10_000,
        description="Largest record Kafka takes (the broker's message.max.bytes); a larger "
        "event goes to the DLQ, cut, instead of being retried for ever.",
    )  # fmt: skip
    status_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    inspect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    dedup_url: SecretStr | None = Field(
        default=None,
        description="Redis for the ids of commands carried out (default: the broker, if Redis).",
    )
    dedup_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=60)
    command_max_age_seconds: float = Field(
        default=3600.0, gt=0, description="Older commands are refused as stale, not carried out."
    )
    commit_interval_seconds: float = Field(
        default=1.0, ge=0, description="How often command offsets are committed (0: each one)."
    )
    commands: bool = Field(default=True, description="Carry out retry/revoke commands.")
    dump: Path | None = Field(default=None, description="Also write raw Celery events here.")

    @field_validator("broker", mode="after")
    @classmethod
    def _broker_or_app(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Required unless an app (--app/--config) is given: then its broker_url is used."""
        if value is None and not info.data.get("app") and not info.data.get("config"):
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("broker", "dedup_url")
    @classmethod
    def _has_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "://" not in value.get_secret_value():
            raise ValueError("expected a URL such as redis://host:6379/0")
        return value

    @property
    def broker_url(self) -> str:
        """The broker URL (a secret); a ConfigError when neither given nor the app's."""
        if self.broker is None:
            raise ConfigError(
                "broker: Field required (--broker or FLOWGUARD_BROKER), unless the Celery app "
                "(--app or --config) names its broker_url"
            )
        return self.broker.get_secret_value()

    @property
    def broker_display(self) -> str:
        """The broker URL with its password masked, for logs and errors."""
        return str(maybe_sanitize_url(self.broker_url))

    def dedup_redis_url(self) -> str | None:
        """Where command ids are kept: ``dedup_url``, else the broker when it is Redis."""
        if self.dedup_url is not None:
            return self.dedup_url.get_secret_value()
        broker = self.broker_url
        if broker.startswith(("redis://", "rediss://")):
            return broker
        return None
