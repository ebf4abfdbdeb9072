"""Building trigger events, and reading Celery's exception reprs.

Trigger ids are derived from the events that caused them, so the same stream
gives the same ids in a replay, a Test run and the live app.
"""

from __future__ import annotations

import ast
import re

from topics.triggers import TaskContext, Trigger, TriggerName

_EXC_REPR = re.compile(r"^\s*([A-Za-z_][\w.]*)\((.*)\)\s*$", re.DOTALL)


def split_exception(exception: str | None) -> tuple[str | None, str | None]:
    """``"KeyError('customer_id')"`` -> ``("KeyError", "customer_id")``.

    Celery reports the exception as its repr. The message is the repr's
    argument: a single string literal is unquoted, anything else is kept as
    written. ``'None'`` (``self.retry()`` without an exception) gives no type.
    """
    if exception is None or exception in ("", "None"):
        return None, None
    match = _EXC_REPR.match(exception)
    if match is None:
        return None, exception
    exc_type, inner = match.group(1), match.group(2).strip()
    return exc_type.rsplit(".", 1)[-1], _unquote(inner)


def _unquote(inner: str) -> str:
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        try:
            value = ast.literal_eval(inner)
        except (ValueError, SyntaxError):
            return inner
        if isinstance(value, str):
            return value
    return inner


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
) -> Trigger:
    return Trigger(
        trigger_id=trigger_id(event, cluster, task.id, ordinal),
        event=event,
        at=at,
        cluster=cluster,
        task=task,
        worker=task.worker,
        threshold_seconds=threshold_seconds,
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
