"""Trigger events: what detection found, before workflows are matched against it.

Internal (``flowguard.triggers``, repartitioned by workflow id in the live app),
and the unit the replay, the Test button and the live agents all match on.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from topics.execution import ActionStatus, ConditionResult, ExecutionRecord, TaskRef
from topics.record import Record, absent

TriggerName = Literal[
    "task.failed",
    "task.orphaned",
    "task.execution_time_exceeded",
    "task.stuck",
    "task.duplicate_start",
    "worker.offline",
]
TRIGGER_NAMES: tuple[TriggerName, ...] = (
    "task.failed",
    "task.orphaned",
    "task.execution_time_exceeded",
    "task.stuck",
    "task.duplicate_start",
    "worker.offline",
)
#: Where a ``task.stuck`` task waits: sent and not received by any worker (no consumer on
#: its queue), or received and not started (prefetched behind busy tasks, a blocked pool).
StuckStage = Literal["unreceived", "unstarted"]
STUCK_STAGES: tuple[StuckStage, ...] = ("unreceived", "unstarted")


class TaskContext(Record):
    """Everything known about the task at trigger time, joined across its events."""

    id: str
    root_id: str
    parent_id: str | None = None
    name: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    worker: str | None = None
    args: str | None = None
    kwargs: str | None = None
    exception: str | None = None
    exception_type: str | None = None
    error_message: str | None = None
    failure_count: int = 0
    attempt: int = Field(default=0, description="Celery's own retries count of this task id.")
    started_at: float | None = None

    def ref(self, cluster: str, fingerprint: str | None = None) -> TaskRef:
        """The task as the execution log shows it (:class:`TaskRef`: the fields it shares, and
        the failure's fingerprint, which the engine computes)."""
        return TaskRef(
            cluster=cluster, fingerprint=fingerprint, **self.model_dump(include=_SHARED_WITH_REF)
        )

    @classmethod
    def of_ref(cls, ref: TaskRef) -> TaskContext:
        """The task rebuilt from the execution log (what the log does not keep is unknown)."""
        return cls(**ref.model_dump(include=_SHARED_WITH_REF))


#: The fields a :class:`TaskContext` and a :class:`TaskRef` share, by name and meaning.
_SHARED_WITH_REF: set[str] = set(TaskRef.model_fields) & set(TaskContext.model_fields)


class Trigger(Record):
    kind: Literal["trigger"] = "trigger"
    version: Literal[1] = 1
    trigger_id: str = Field(description="Deterministic: the same input events give the same id.")
    event: TriggerName
    at: float = Field(description="Event time of the trigger, UTC epoch seconds.")
    cluster: str
    task: TaskContext | None = None
    worker: str | None = Field(default=None, description="Worker hostname (worker.offline).")
    threshold_seconds: float | None = None
    stage: StuckStage | None = Field(
        default=None, exclude_if=absent, description="task.stuck: where the task waits."
    )
    reason: str = Field(default="", description="Why it fired, for people (e.g. heartbeat expiry).")


class CancelExecution(Record):
    """Execution rollback: cancel an execution's pending scheduled actions (a delayed retry).

    Produced by the API (or the CLI) to ``flowguard.triggers``, keyed by workflow id, so that it
    reaches the worker holding that workflow's scheduled actions; the cancellation is recorded on
    the execution log (seq 1, outcome ``skipped``, reason ``cancelled``). Cancelling an execution
    that has nothing pending records nothing.
    """

    kind: Literal["execution.cancel"] = "execution.cancel"
    version: Literal[1] = 1
    workflow_id: str = Field(min_length=1)
    execution_id: str = Field(min_length=1)
    requested_by: str = Field(min_length=1, description="Who asked (API token name, or 'cli').")
    requested_at: str = Field(description="ISO 8601 UTC.")
    comment: str = ""


class Matched(Record):
    """A trigger that matched a workflow, repartitioned by workflow id for the breaker and deciding.

    Detection (keyed by cluster and root id) matches each trigger against every workflow and
    sends one of these per match; deciding (keyed by workflow id) counts and runs it.
    """

    kind: Literal["trigger.matched"] = "trigger.matched"
    version: Literal[1] = 1
    workflow_id: str
    workflow_version: int
    trigger: Trigger
    conditions: tuple[ConditionResult, ...] = ()


class ActionOutcome(Record):
    """What became of an action after its execution was decided: delivered, failed, sent, skipped.

    Sent back to the workflow's partition, where the execution's record is kept, so that one
    place writes every version of an execution record (``seq`` 1, 2, ...).
    """

    kind: Literal["action.outcome"] = "action.outcome"
    version: Literal[1] = 1
    workflow_id: str
    execution_id: str
    action_id: str
    status: ActionStatus
    detail: str = ""
    recovered: bool = Field(default=False, description="A delayed retry skipped: task recovered.")
    at: str = Field(description="ISO 8601 UTC.")


class ExpireExecutions(Record):
    """Executions of one workflow that nothing can refer to any more: the worker holding them
    forgets them (after checking again). Sent by the workers' own periodic scan."""

    kind: Literal["executions.expire"] = "executions.expire"
    version: Literal[1] = 1
    workflow_id: str
    execution_ids: tuple[str, ...]


TriggersRecord = Annotated[
    Matched | ActionOutcome | CancelExecution | ExpireExecutions, Field(discriminator="kind")
]
TRIGGERS_ADAPTER: TypeAdapter[TriggersRecord] = TypeAdapter(TriggersRecord)


class DeliveryRequest(Record):
    """A notice to deliver, on ``<prefix>.deliveries`` (the outbox), keyed by action id.

    Deciding writes it with the execution's entry; the deliver agent acknowledges it only once
    the delivery's outcome is recorded, so a crash neither loses it nor (once delivered)
    sends it again. It carries no secret: the action (URL, headers) is read from the workflow
    version it was decided under.
    """

    kind: Literal["delivery.request"] = "delivery.request"
    version: Literal[1] = 1
    workflow_id: str
    workflow_version: int
    action_id: str
    text: str
    dedup_key: str
    record: ExecutionRecord = Field(description="The execution as decided (the webhook body).")
