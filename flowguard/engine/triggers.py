"""Building trigger events.

Trigger ids are derived from the events that caused them, so the same stream
gives the same ids in a replay, a Test run and the live app.
"""

from __future__ import annotations

from topics.triggers import StuckStage, TaskContext, Trigger, TriggerName


def error_text(task: TaskContext) -> str:
    """What ``error_pattern`` is searched in: ``"ExceptionType: message"``."""
    if task.exception_type is None:
        return task.error_message or ""
    return f"{task.exception_type}: {task.error_message or ''}"


def trigger_id(event: TriggerName, cluster: str, subject: str, ordinal: int | str) -> str:
    """``task.failed/prod/<task id>/2``: the event, where, what, and which occurrence."""
    return f"{event}/{cluster}/{subject}/{ordinal}"


def task_trigger(
    event: TriggerName,
    *,
    at: float,
    cluster: str,
    task: TaskContext,
    ordinal: int | str,
    reason: str = "",
    threshold_seconds: float | None = None,
    stage: StuckStage | None = None,
) -> Trigger:
    return Trigger(
        trigger_id=trigger_id(event, cluster, task.id, ordinal),
        event=event,
        at=at,
        cluster=cluster,
        task=task,
        worker=task.worker,
        threshold_seconds=threshold_seconds,
        stage=stage,
        reason=reason,
    )


def worker_trigger(*, at: float, cluster: str, hostname: str, ordinal: int, reason: str) -> Trigger:
    return Trigger(
        trigger_id=trigger_id("worker.offline", cluster, hostname, ordinal),
        event="worker.offline",
        at=at,
        cluster=cluster,
        worker=hostname,
        reason=reason,
    )
