"""All settings in one frozen object, read from ``FLOWGUARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flowguard.kafka_security import KafkaSecuritySettings
from flowguard.secrets import DEFAULT_SECRET_PREFIX, Keyring, SecretPolicy, parse_key


class Settings(BaseSettings, KafkaSecuritySettings):
    """flowguard's settings. Every field can be set as ``FLOWGUARD_<NAME>``; the Kafka security
    ones (``FLOWGUARD_KAFKA_SECURITY_PROTOCOL``...) are in :mod:`flowguard.kafka_security`."""

    # hide_input_in_errors: FLOWGUARD_KAFKA_SASL_PASSWORD and the secrets keys are secrets.
    model_config = SettingsConfigDict(
        env_prefix="FLOWGUARD_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

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

    secret_prefix: str = Field(
        default=DEFAULT_SECRET_PREFIX,
        description="A workflow's ${NAME} may read environment variables starting with this "
        "(empty: none by prefix).",
    )
    secret_names: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="More environment variables a workflow's ${NAME} may read, comma separated.",
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Key that seals literal workflow secrets on Kafka: '<key id>:<Fernet key>'. "
        "Unset: literals are stored in clear (lint warns).",
    )
    secrets_old_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Earlier '<key id>:<Fernet key>' values, comma separated: versions sealed "
        "with them still open after a rotation.",
    )

    @field_validator("secret_names", "secrets_old_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("secrets_key", "secrets_old_keys", mode="after")
    @classmethod
    def _keys_parse(cls, value: Any) -> Any:
        for key in value if isinstance(value, tuple) else (value,):
            if key is not None:
                parse_key(key.get_secret_value())  # a ValueError naming the rule, not the key
        return value

    def keyring(self) -> Keyring:
        """The keys that seal literal workflow secrets (current) and open them (all, by id)."""
        current = self.secrets_key.get_secret_value() if self.secrets_key is not None else None
        return Keyring.of(current, (key.get_secret_value() for key in self.secrets_old_keys))

    def secret_policy(self) -> SecretPolicy:
        """Which ``${NAME}`` references workflows may use."""
        return SecretPolicy(self.secret_prefix, frozenset(self.secret_names))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def setting_problem(exc: ValidationError, prefix: str = "FLOWGUARD_") -> str:
    """A settings error as a user sees it: the variable to fix and why (no input echoed: it may
    be a secret)."""
    error = exc.errors(include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    return f"{prefix}{field.upper()}: {error['msg']}"
