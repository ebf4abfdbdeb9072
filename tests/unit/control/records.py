"""Execution records for history tests: many, varied, deterministic."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from topics.execution import (
    ActionResult,
    BreakerRef,
    ExecutionRecord,
    TaskRef,
    TriggerRef,
    WorkflowRef,
)
from topics.record import iso

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
WORKFLOWS = ("auto-retry", "alert-payments", "escalate")
OUTCOMES = ("success", "failure", "skipped")
TRIGGERS = ("task.failed", "task.orphaned")
CLUSTERS = ("eu", "us")


def record(
    i: int,
    *,
    seq: int = 0,
    outcome: str | None = None,
    at: float | None = None,
    root_id: str | None = None,
    task_id: str | None = None,
    parent_id: str | None = None,
    retry_task_id: str | None = None,
) -> ExecutionRecord:
    """The i-th execution: fields cycle through small sets so every filter has matches."""
    retry = ActionResult(
        action_id=f"ex-{i}/0",
        type="retry",
        status="sent" if seq else "scheduled",
        attempt=1,
        retry_task_id=retry_task_id,
    )
    return ExecutionRecord(
        execution_id=f"ex-{i:06d}",
        seq=seq,
        workflow=WorkflowRef(id=WORKFLOWS[i % 3], name=WORKFLOWS[i % 3].title(), version=1),
        trigger=TriggerRef(
            id=f"trig-{i}", event=TRIGGERS[i % 2], at=iso(T0 + i * 7.0 if at is None else at) or ""
        ),
        task=TaskRef(
            cluster=CLUSTERS[i % 2],
            id=task_id or f"task-{i}",
            root_id=root_id or f"task-{i}",
            parent_id=parent_id,
            name=f"app.tasks.t{i % 5}",
            worker=f"w{i % 4}@host",
            exception_type="ConnectionError",
            error_message="refused",
        ),
        circuit_breaker=BreakerRef(
            state="closed", count=1, max_executions=100, window_seconds=3600
        ),
        actions=(retry,) if retry_task_id else (),
        outcome=outcome or OUTCOMES[i % 3],  # type: ignore[arg-type]
    )


def message(
    rec: ExecutionRecord | bytes, offset: int, partition: int = 0, topic: str = "t"
) -> ConsumerRecord[bytes, bytes]:
    """A consumer record as aiokafka hands it over."""
    value = rec if isinstance(rec, bytes) else rec.to_json().encode()
    key = b"k" if isinstance(rec, bytes) else rec.workflow.id.encode()
    return ConsumerRecord(
        topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=len(key),
        serialized_value_size=len(value), headers=(),
    )  # fmt: skip
