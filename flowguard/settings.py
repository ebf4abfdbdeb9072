"""All settings in one frozen object, read from ``FLOWGUARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from flowguard.control.secrets import DEFAULT_SECRET_PREFIX, Keyring, SecretPolicy, parse_key
from flowguard.settings_base import ProcessSettings


class Settings(ProcessSettings):
    """flowguard's settings. Every field can be set as ``FLOWGUARD_<NAME>``; the ones every
    process reads (Kafka, its security, the health port, the log format) are in
    :class:`~flowguard.settings_base.ProcessSettings`. The secrets keys are secrets: the base
    echoes no input in errors."""

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
