"""Every topic flowguard uses, as data: name, partitions, compaction, retention."""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic. ``suffix`` is appended to the deployment's prefix (``flowguard`` by default)."""

    suffix: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None
    public: bool = False
    description: str = ""
    extra_config: dict[str, str] = field(default_factory=dict)

    def name(self, prefix: str = "flowguard") -> str:
        return f"{prefix}.{self.suffix}"

    def config(self) -> dict[str, str]:
        """Topic configs to create it with."""
        cfg = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        cfg.update(self.extra_config)
        return cfg


EVENTS = TopicSpec(
    "events", 12, retention_ms=7 * DAY_MS, description="Normalized Celery events, key cluster/root."
)
COMMANDS = TopicSpec(
    "commands", 6, retention_ms=7 * DAY_MS, description="Retry/revoke commands, key cluster."
)
COMMAND_RESULTS = TopicSpec(
    "command-results", 6, retention_ms=7 * DAY_MS, description="What bridges did with commands."
)
WORKFLOWS = TopicSpec(
    "workflows", 1, compacted=True, description="Workflow versions, key workflow id."
)
WORKFLOW_HISTORY = TopicSpec(
    "workflow-history",
    1,
    retention_ms=-1,
    description="Every saved workflow version, never compacted: versions, diff and rollback.",
)
EXECUTION_LOG = TopicSpec(
    "execution-log",
    6,
    retention_ms=-1,
    public=True,
    description="Append-only execution records (flowguard.execution/1), key workflow id.",
)
TRIGGERS = TopicSpec(
    "triggers", 12, retention_ms=DAY_MS, description="Internal: triggers keyed by workflow id."
)
SCHEDULED = TopicSpec(
    "scheduled",
    EVENTS.partitions,
    retention_ms=7 * DAY_MS,
    description="Internal: delayed retries, cancels, ticks and worker fan-out, keyed as events.",
)
DELIVERIES = TopicSpec(
    "deliveries",
    12,
    retention_ms=7 * DAY_MS,
    description="Internal: notices to deliver (the outbox), key action id.",
)
DLQ = TopicSpec(
    "dlq", 1, retention_ms=30 * DAY_MS, description="Undecodable records with the reason."
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    EVENTS,
    COMMANDS,
    COMMAND_RESULTS,
    WORKFLOWS,
    WORKFLOW_HISTORY,
    EXECUTION_LOG,
    TRIGGERS,
    SCHEDULED,
    DELIVERIES,
    DLQ,
)


def topic_names(prefix: str = "flowguard") -> dict[str, str]:
    """Suffix -> full topic name for one deployment prefix."""
    return {spec.suffix: spec.name(prefix) for spec in ALL_TOPICS}
