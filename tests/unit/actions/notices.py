"""Notices as the engine emits them, for action tests: a real workflow, a real record."""

from __future__ import annotations

import uuid
from typing import Any

from flowguard.celery_wire.events import translate
from flowguard.engine.core import Engine, EngineConfig
from flowguard.engine.decision import Notice, NotifyAction
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from tests import celery_events as ev
from topics.execution import BreakerRef, ExecutionRecord, TaskRef, TriggerRef, WorkflowRef

SLACK_SECRET_URL_PATH = "/services/T0SECRET/B0SECRET/XXXXSECRETXXXXabcd"
ROUTING_KEY = "R0123456789abcdefSECRETKEY012345"
SIGNING_SECRET = "whsec-SIGNING-SECRET-0123456789"
HEADER_SECRET = "Bearer sk-live-HEADERSECRET-42"


def action_of(doc: dict[str, Any]) -> NotifyAction:
    """Validate one action document the way a workflow file is validated."""
    workflow = parse_workflow(
        {"name": "payments alert", "trigger": {"event": "task.failed"}, "action": doc},
        source="test",
    )
    action = workflow.actions[0]
    assert not isinstance(action, type(None))
    return action  # type: ignore[return-value]


def record(execution_id: str | None = None) -> ExecutionRecord:
    """A decision record for a failed payment task."""
    return ExecutionRecord(
        execution_id=execution_id or str(uuid.uuid4()),
        workflow=WorkflowRef(id="payments-alert", name="payments alert", version=3),
        trigger=TriggerRef(id="t-1", event="task.failed", at="2026-11-02T10:00:00Z"),
        task=TaskRef(
            cluster="eu",
            id="task-1",
            root_id="task-1",
            name="payments.process_card",
            queue="payments",
            worker="celery@pay-1",
            args="(42, 'EUR')",
            kwargs="{}",
            exception_type="ConnectionError",
            error_message="gateway <!channel> unreachable",
            failure_count=5,
        ),
        circuit_breaker=BreakerRef(
            state="closed", count=1, max_executions=100, window_seconds=3600
        ),
        outcome="success",
    )


def notice(
    doc: dict[str, Any], *, action_id: str | None = None, text: str = "Task failed"
) -> Notice:
    """A notice for ``doc`` (an action document) with a fresh action id unless given."""
    rec = record()
    return Notice(
        action_id=action_id or f"{rec.execution_id}/0",
        action=action_of(doc),
        text=text,
        dedup_key="payments-alert/eu/task-1",
        record=rec,
    )


def engine_notices(doc: dict[str, Any], raws: list[dict[str, Any]]) -> list[Notice]:
    """The notices the engine decides for workflow ``doc`` over raw Celery events (cluster prod)."""
    eng = Engine([Published.of(parse_workflow(doc, source="test"))], EngineConfig(dry_run=False))
    found: list[Notice] = []
    for raw in raws:
        event = translate(raw, "prod")
        assert event is not None
        found += eng.feed(event).notices
    return found


def failing_chain(root: str, failures: int, start: float) -> list[dict[str, Any]]:
    """``root`` fails, then each retry made of it (same root, parent the one before) fails too."""
    raws: list[dict[str, Any]] = []
    parent = None
    for n in range(failures):
        task_id = root if n == 0 else f"{root}-retry-{n}"
        raws += ev.run(task_id, start + 10 * n, "app.charge", root_id=root, parent_id=parent)
        parent = task_id
    return raws
