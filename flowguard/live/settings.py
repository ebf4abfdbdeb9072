"""Settings of ``flowguard worker``, from ``FLOWGUARD_*`` variables like every other setting."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, FilePath, SecretStr, ValidationInfo, field_validator

from flowguard.engine.detect import STRANDED_AFTER_SECONDS, Timing
from flowguard.engine.tasks import CHAIN_RETENTION_SECONDS
from flowguard.engine.workers import DEFAULT_OFFLINE_GRACE_SECONDS
from flowguard.settings import Settings
from topics.signing import CommandKey, parse_cluster_keys


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
    linger_ms: int = Field(
        default=5, ge=0,
        description="Producer linger: latency vs batching (changelog records are most of "
        "what the worker produces; 5 ms cut its CPU per event by a quarter against 0).",
    )  # fmt: skip
    batch_max_events: int = Field(
        default=250, ge=1,
        description="Detection applies the events waiting for it, up to this many, at once; "
        "a batch holds the event loop while it is applied (about 180 us an event).",
    )  # fmt: skip
    state_flush_seconds: float = Field(
        default=1.0, gt=0,
        description="Detection writes changed chain and worker state to its tables at most this "
        "long after the change (a chain that settles sooner is never written), and acks the "
        "events after: a crash applies up to this much input again.",
    )  # fmt: skip
    state_flush_events: int = Field(
        default=20_000, ge=1, description="... or once this many events wait for the write."
    )
    offline_grace_seconds: float = Field(
        default=DEFAULT_OFFLINE_GRACE_SECONDS, ge=0,
        description="After a worker's worker-offline event (a warm shutdown, which finishes "
        "what it runs), how long its running tasks have before they count as orphaned. "
        "Heartbeats that stop (SIGKILL) orphan them at once.",
    )  # fmt: skip
    chain_retention_seconds: float = Field(
        default=CHAIN_RETENTION_SECONDS, gt=0,
        description="A retry chain whose tasks have all finished is kept this long for its "
        "failure counts (failure_count_threshold) and recovery checks, then forgotten.",
    )  # fmt: skip
    retry_stranded_seconds: float = Field(
        default=STRANDED_AFTER_SECONDS, gt=0,
        description="A retry sent and not received by any worker within this long is recorded "
        "stranded (no worker consumes its queue, or the cluster is down).",
    )  # fmt: skip
    max_trigger_age_seconds: float = Field(
        default=3600.0, gt=0,
        description="A trigger whose event is older than this (wall clock) is not acted on: "
        "a new consumer group starts at the earliest offset, up to seven days back.",
    )  # fmt: skip
    delivery_concurrency: int = Field(
        default=100, ge=1,
        description="Notices delivered at once by one process (each endpoint also has its "
        "own lane: see the actions' settings).",
    )  # fmt: skip
    delivery_drain_seconds: float = Field(
        default=10.0, ge=0,
        description="At a rebalance or a warm shutdown, how long deliveries of the partitions "
        "given up may take to finish (so the next owner does not send them again).",
    )  # fmt: skip
    execution_retention_seconds: float = Field(
        default=24 * 3600.0, gt=0,
        description="A settled execution is kept this long (for a trigger or outcome that comes "
        "again); then forgotten. Its records stay on the execution log.",
    )  # fmt: skip
    expiry_scan_seconds: float = Field(
        default=600.0, gt=0, description="How often each worker looks for executions to forget."
    )
    session_timeout_seconds: float = Field(
        default=10.0, ge=6,
        description="Consumer group session timeout: how soon the partitions of a worker that "
        "died are taken over (Faust's own default is 60 s; Kafka's minimum is 6 s).",
    )  # fmt: skip
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    tick_interval_seconds: float = Field(
        default=0.25, gt=0, description="How often wall-clock deadlines are checked."
    )
    heartbeat_expiry_factor: float = Field(
        default=2.0, gt=1, description="A worker is offline after this many heartbeat intervals."
    )
    progress_stall_seconds: float = Field(
        default=120.0, gt=0,
        description="Not ready (/readyz 503, and a log line) when the workflow feed has not "
        "caught up, or a partition's committed offset has not moved while records wait, for "
        "this long (a delivery may hold its partition's commit up to a minute).",
    )  # fmt: skip
    reread_stall_seconds: float = Field(
        default=15.0, gt=0,
        description="An input partition (not the outbox) whose committed offset has not moved "
        "while records wait for this long is read again from its committed offset: records "
        "Faust lost track of at a rebalance would otherwise wait for good.",
    )  # fmt: skip
    recovery_stall_exit_seconds: float = Field(
        default=90.0, ge=0,
        description="Exit (code 70) when a table recovery has read nothing for this long while "
        "the broker answers: Faust's recovery can wedge for good after a rebalance (seen in a "
        "fault trial), and a restart gets the partitions assigned and recovered again. 0: never.",
    )  # fmt: skip
    command_keys: SecretStr | None = Field(
        default=None,
        description="Keys that sign the commands sent to bridges: 'cluster=<key id>:<secret>', "
        "comma separated; cluster '*' for every cluster not named. A cluster without a key gets "
        "unsigned commands, which its bridge refuses unless told to allow them.",
    )
    command_keys_file: FilePath | None = Field(
        default=None,
        description="A file of more such entries, one a line ('#' comments), read at start.",
    )

    @field_validator("command_keys")
    @classmethod
    def _command_keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_cluster_keys(value.get_secret_value())
        return value

    @field_validator("command_keys_file")
    @classmethod
    def _command_keys_file_parses(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None:
            parse_cluster_keys(_keys_text(info.data.get("command_keys"), value))
        return value

    @cached_property
    def command_signing_keys(self) -> dict[str, CommandKey]:
        """Each cluster's signing key (``*``: the others'), from both settings (read once)."""
        return parse_cluster_keys(_keys_text(self.command_keys, self.command_keys_file))

    def timing(self) -> Timing:
        """The rules' durations, as the decision core takes them."""
        return Timing(
            heartbeat_expiry_factor=self.heartbeat_expiry_factor,
            offline_grace_seconds=self.offline_grace_seconds,
            chain_retention_seconds=self.chain_retention_seconds,
            stranded_after_seconds=self.retry_stranded_seconds,
        )


def _keys_text(keys: SecretStr | None, path: Path | None) -> str:
    text = "" if keys is None else keys.get_secret_value()
    if path is not None:
        text += "\n" + path.read_text(encoding="utf-8")
    return text
