"""The public execution record, schema ``flowguard.execution/1``.

Other teams consume ``flowguard.execution-log``: this schema only grows in
compatible ways (new optional fields). A record never holds a secret.

An execution whose actions are delayed (a retry with ``delay_seconds``) gets a
second record with the same ``execution_id`` and ``seq`` 1 when the delayed
actions come due: carried out, or skipped because the task recovered.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from topics.record import Record

EXECUTION_SCHEMA: Literal["flowguard.execution/1"] = "flowguard.execution/1"

Outcome = Literal["success", "failure", "skipped"]
SkipReason = Literal["circuit_open", "max_attempts_reached", "recovered", "cancelled"]
ActionStatus = Literal[
    "planned", "scheduled", "sent", "stranded", "succeeded", "failed", "skipped", "cancelled"
]


class WorkflowRef(Record):
    id: str
    name: str
    version: int = Field(ge=0, description="0 for a draft that was never published.")


class TriggerRef(Record):
    id: str
    event: str
    at: str = Field(description="ISO 8601 UTC event time.")
    reason: str = ""


class TaskRef(Record):
    cluster: str
    id: str
    root_id: str
    parent_id: str | None = None
    name: str | None = None
    queue: str | None = None
    worker: str | None = None
    args: str | None = None
    kwargs: str | None = None
    exception_type: str | None = None
    error_message: str | None = None
    failure_count: int = 0
    fingerprint: str | None = Field(
        default=None,
        description="The failure's fingerprint (flowguard.engine.fingerprint): task name, "
        "exception type and message with numbers, ids and quoted values normalized. Null "
        "when the task did not fail with an error, absent on records written before it existed.",
    )


class WorkerRef(Record):
    cluster: str
    hostname: str


class ConditionResult(Record):
    name: str
    value: str | int
    matched: bool


class BreakerRef(Record):
    state: Literal["closed", "open"]
    count: int = Field(description="Executions that ran actions in the window, this one included.")
    max_executions: int
    window_seconds: float
    transition: Literal["opened", "closed"] | None = None
    suppressed: int = 0
    cluster: str | None = Field(
        default=None,
        description="The cluster whose breaker this is, when the workflow's breaker is scoped "
        "per cluster (circuit_breaker.scope: cluster); null for a workflow-wide one.",
    )


class ActionResult(Record):
    action_id: str
    type: str
    status: ActionStatus
    detail: str = ""
    attempt: int | None = None
    delay_seconds: float | None = None
    due_at: str | None = None
    command_id: str | None = None
    retry_task_id: str | None = None
    queue: str | None = Field(
        default=None,
        description="A retry's queue as decided: the task's own, or null when not known (the "
        "bridge then routes it by the cluster's Celery app, or refuses it).",
    )


class ExecutionRecord(Record):
    schema_: Literal["flowguard.execution/1"] = Field(
        default=EXECUTION_SCHEMA, alias="schema", serialization_alias="schema"
    )
    kind: Literal["execution"] = "execution"
    execution_id: str
    seq: int = Field(default=0, ge=0, description="0 at decision; 1 when delayed actions resolve.")
    workflow: WorkflowRef
    trigger: TriggerRef
    task: TaskRef | None = None
    worker: WorkerRef | None = None
    conditions: tuple[ConditionResult, ...] = ()
    circuit_breaker: BreakerRef
    actions: tuple[ActionResult, ...] = ()
    outcome: Outcome
    reason: SkipReason | None = None
    dry_run: bool = False
    recorded_at: str | None = Field(
        default=None, description="Wall clock when written (live only; replay leaves it null)."
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def to_json(self) -> str:
        """The wire form: ``schema`` as the key, nulls kept so consumers see every field."""
        return self.model_dump_json(by_alias=True)
