"""Settings of the action runners, one frozen object read from ``FLOWGUARD_ACTIONS_*``.

Everything that bounds how long, how often and where flowguard talks to the
outside world lives here, so an operator tunes it in one place.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from flowguard.actions.safety import AllowList
from flowguard.settings_base import FlowguardSettings

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class ActionSettings(FlowguardSettings):
    """How actions reach the outside world; each field is ``FLOWGUARD_ACTIONS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLOWGUARD_ACTIONS_")

    allow_hosts: Annotated[AllowList, NoDecode] = Field(
        default_factory=AllowList,
        description=(
            "Comma-separated CIDRs (10.0.0.0/8, 127.0.0.1) and host patterns (*.corp.example) "
            "that actions may reach although they are private, loopback or plain HTTP."
        ),
    )
    max_total_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Bound on one delivery: waiting for a slot, every attempt and every backoff.",
    )
    per_endpoint_concurrency: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Requests in flight to one endpoint (a URL without its query) at a time.",
    )
    per_host_concurrency: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description=(
            "Requests in flight to one host:port at a time, all its endpoints together: bounds "
            "the connections to a host whatever the number of workflows sending there."
        ),
    )
    queue_size: int = Field(
        default=200,
        ge=0,
        le=100_000,
        description="Deliveries that may wait for one endpoint; one more fails at once.",
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Read/write timeout of one attempt (a webhook's timeout_seconds overrides).",
    )
    retries: int = Field(
        default=3, ge=0, le=20, description="Retries after the first attempt for Slack/PagerDuty."
    )
    backoff_base_seconds: float = Field(default=0.5, gt=0, le=60)
    backoff_max_seconds: float = Field(default=30.0, gt=0, le=600)
    pagerduty_url: str = Field(
        default=PAGERDUTY_EVENTS_URL, description="Events API v2 endpoint (tests point it locally)."
    )
    max_response_bytes: int = Field(
        default=64 * 1024, ge=256, le=16 * 1024 * 1024, description="Response body read cap."
    )
    excerpt_chars: int = Field(default=200, ge=16, le=2000)
    dedup_cache_size: int = Field(
        default=100_000, ge=1, description="Delivered action ids remembered in process (LRU)."
    )
    dedup_ttl_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="How long a delivery store remembers an id."
    )
    max_keepalive_connections: int = Field(default=100, ge=0)
    ui_url: str | None = Field(
        default=None, description="Base URL of the flowguard UI, for links in Slack messages."
    )

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _parse_allow_hosts(cls, value: Any) -> AllowList:
        if isinstance(value, AllowList):
            return value
        if isinstance(value, str):
            value = [part for part in value.split(",")]
        return AllowList.parse(value)
