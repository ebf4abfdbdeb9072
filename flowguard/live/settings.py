"""Settings of ``flowguard worker``, from ``FLOWGUARD_*`` variables like every other setting."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from flowguard.settings import Settings


class LiveSettings(Settings):
    app_id: str = Field(
        default="flowguard",
        description="Faust app id: the consumer group and the prefix of its changelog topics.",
    )
    store: str = Field(
        default="memory://",
        description="Faust table store: memory:// (rebuilt from changelogs on start) or rocksdb://.",
    )
    data_dir: Path = Field(
        default=Path(".flowguard/worker"),
        description="Faust's data directory (table stores, when on disk), one per app id.",
    )
    replication_factor: int = Field(
        default=1, ge=1, description="Replication of the changelog topics Faust creates."
    )
    linger_ms: int = Field(default=1, ge=0, description="Producer linger: latency vs batching.")
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    tick_interval_seconds: float = Field(
        default=0.25, gt=0, description="How often wall-clock deadlines are checked."
    )
    heartbeat_expiry_factor: float = Field(
        default=2.0, gt=1, description="A worker is offline after this many heartbeat intervals."
    )
