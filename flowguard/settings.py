"""All settings in one frozen object, read from ``FLOWGUARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """flowguard's settings. Every field can be set as ``FLOWGUARD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLOWGUARD_", frozen=True, extra="ignore")

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
