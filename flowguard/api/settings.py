"""The API's settings: one frozen object read from ``FLOWGUARD_API_*``.

Tokens are secrets: they live here as ``SecretStr`` and only their names (who
made a change) ever leave the process.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from flowguard.settings_base import FlowguardSettings


class ApiSettings(FlowguardSettings):
    """``flowguard api`` settings. Every field can be set as ``FLOWGUARD_API_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLOWGUARD_API_")

    tokens: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "API tokens and their roles: 'name:role:token,...' (or 'token:role'), or JSON "
            '[{"name": ..., "role": "viewer|editor|admin", "token": ...}].'
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535)
    cors_origins: tuple[str, ...] = Field(
        default=(), description="Origins allowed to call the API from a browser; none by default."
    )
    history_dir: Path = Field(
        default=Path(".flowguard/api"),
        description="Where the execution-history projection lives (rebuilt from the log if lost).",
    )
    test_max_events: int = Field(
        default=500_000, ge=1, description="Test Workflow reads at most this many events."
    )
    test_max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="Largest JSONL upload Test Workflow accepts."
    )

    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest request body (413 above it), checked before it is read or parsed.",
    )
    max_unauthenticated_body_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="Largest request body from a caller without a known token (413 above it).",
    )
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="Largest request header block (431 above it)."
    )
    max_yaml_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest YAML text a save, test or import accepts."
    )
    test_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Test Workflow runs (and imports) at once, each on a thread off the event "
        "loop; more wait for a slot.",
    )

    def history_file(self, prefix: str) -> Path:
        """One projection file per topic prefix: a file never mixes two deployments' logs."""
        return self.history_dir / f"{prefix}.history.sqlite"
