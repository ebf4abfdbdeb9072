"""The workflows list: each live workflow with what the execution history says about it."""

from __future__ import annotations

import time
from typing import Literal

from flowguard.api.models import LastExecution, WorkflowSummary
from flowguard.control.history import HistoryProjection
from flowguard.engine.documents import parse_workflow
from flowguard.errors import WorkflowInvalid
from topics.execution import ExecutionRecord
from topics.record import from_iso
from topics.workflows import WorkflowVersion

HOUR = 3600


def _sparkline(history: HistoryProjection, workflow_id: str, now: float) -> list[int]:
    """Executions in each of the last 24 whole hours, oldest first (this hour last)."""
    first = (int(now) // HOUR - 23) * HOUR
    counts = [0] * 24
    for hour, _, count in history.counts_per_hour(workflow_id, since=first, until=now + 1):
        index = int((from_iso(hour) - first) // HOUR)
        if 0 <= index < 24:
            counts[index] += count
    return counts


def circuit_state(last: ExecutionRecord | None, now: float) -> Literal["closed", "open"] | None:
    """The breaker as the next execution would find it, judged from the latest record.

    An open circuit stays open at most one window after the execution that found it open
    (by then the executions that filled it have left the window), so a record older than
    that says closed, however it was recorded.
    """
    if last is None:
        return None
    breaker = last.circuit_breaker
    if breaker.state == "open" and now < from_iso(last.trigger.at) + breaker.window_seconds:
        return "open"
    return "closed"


def _summary(history: HistoryProjection, version: WorkflowVersion, now: float) -> WorkflowSummary:
    definition = version.definition
    try:
        workflow = parse_workflow(definition, source=version.workflow_id)
    except WorkflowInvalid:
        # Stored before a rule tightened: still listed, shown disabled, so it can be fixed.
        name, description, enabled, trigger = str(definition.get("name", "")), "", False, "?"
    else:
        name, description = workflow.name, workflow.description
        enabled, trigger = workflow.enabled, workflow.trigger.event
    stats = history.stats(version.workflow_id, now=now)
    last = stats.last_execution
    return WorkflowSummary(
        id=version.workflow_id,
        name=name,
        description=description,
        enabled=enabled,
        version=version.workflow_version,
        trigger=trigger,
        saved_at=version.saved_at,
        saved_by=version.saved_by,
        circuit_state=circuit_state(last, now),
        last_execution=LastExecution(
            execution_id=last.execution_id, outcome=last.outcome, at=last.trigger.at
        )
        if last is not None
        else None,
        executions_24h=stats.executions_24h,
        sparkline=_sparkline(history, version.workflow_id, now),
    )


def summaries(
    history: HistoryProjection, versions: list[WorkflowVersion], *, now: float | None = None
) -> list[WorkflowSummary]:
    """One summary per workflow, ordered by name (blocking: run it off the event loop)."""
    now = time.time() if now is None else now
    return sorted(
        (_summary(history, v, now) for v in versions), key=lambda s: (s.name.lower(), s.id)
    )
