"""Template previews and sample notifications, rendered by the engine's own template code.

A preview needs a trigger to fill the variables: the first execution of a Test
Workflow run when there is one, else an example failure, so the editor can show
what a message will look like before any event arrives.
"""

from __future__ import annotations

from dataclasses import replace

from flowguard.engine.breaker import BreakerState
from flowguard.engine.decision import Notice, decide, template_values
from flowguard.engine.matching import Published
from flowguard.engine.messages import compile_template
from flowguard.engine.workflow import Workflow
from topics.execution import ExecutionRecord
from topics.record import from_iso
from topics.triggers import TaskContext, Trigger

EXAMPLE_TRIGGER = Trigger(
    trigger_id="example",
    event="task.failed",
    at=1_767_225_600.0,
    cluster="example-cluster",
    worker="celery@worker-1",  # a task trigger names its task's worker, as the engine's do
    task=TaskContext(
        id="5f0c1c1e-0000-4000-8000-000000000001",
        root_id="5f0c1c1e-0000-4000-8000-000000000001",
        name="myapp.tasks.send_email",
        queue="emails",
        worker="celery@worker-1",
        args="('user@example.com',)",
        kwargs="{}",
        exception_type="ConnectionError",
        error_message="Connection refused",
        failure_count=1,
    ),
)


def example_trigger(workflow: Workflow) -> Trigger:
    """The example a preview or a sample shows for ``workflow``: of its own trigger event (a
    task waiting in its queue has no exception; a duplicate start names who started it again),
    worded as the engine words its reason."""
    event = workflow.trigger.event
    if event not in ("task.stuck", "task.duplicate_start") or EXAMPLE_TRIGGER.task is None:
        return EXAMPLE_TRIGGER
    task = EXAMPLE_TRIGGER.task.model_copy(
        update={"exception_type": None, "error_message": None, "failure_count": 0}
    )
    if event == "task.duplicate_start":
        reason = (
            "started again on celery@worker-2 3600s after its first start (start 2 of attempt "
            "0, no retry between)"
        )
        return EXAMPLE_TRIGGER.model_copy(update={"event": event, "task": task, "reason": reason})
    threshold = workflow.trigger.threshold_seconds or 300.0
    stage = workflow.trigger.stage or "unstarted"
    if stage == "unreceived":
        task = task.model_copy(update={"worker": None})
        reason = (
            f"sent {threshold:g}s ago and no worker received it: is any worker consuming "
            "queue 'emails'?"
        )
    else:
        reason = (
            f"received by celery@worker-1 {threshold:g}s ago and not started: its pool is busy "
            "or blocked"
        )
    return EXAMPLE_TRIGGER.model_copy(
        update={
            "event": event,
            "task": task,
            "worker": task.worker,
            "threshold_seconds": threshold,
            "stage": stage,
            "reason": reason,
        }
    )


def trigger_of(record: ExecutionRecord) -> Trigger:
    """The trigger an execution record describes, rebuilt from its public fields."""
    task = record.task
    return Trigger(
        trigger_id=record.trigger.id,
        event=record.trigger.event,
        at=from_iso(record.trigger.at),
        cluster=task.cluster if task else (record.worker.cluster if record.worker else ""),
        task=TaskContext.of_ref(task) if task else None,
        worker=record.worker.hostname if record.worker else (task.worker if task else None),
        reason=record.trigger.reason,
    )


def variables(workflow: Workflow, record: ExecutionRecord | None) -> dict[str, str]:
    """Every template variable's value for this workflow and execution (or the example)."""
    trigger = trigger_of(record) if record is not None else example_trigger(workflow)
    execution_id = record.execution_id if record is not None else "example-execution"
    return template_values(trigger, workflow, execution_id, None)


def render(template: str, values: dict[str, str]) -> str:
    """Render ``template``; raises ``TemplateInvalid`` with the engine's message."""
    return compile_template(template).render(values)


def sample_notices(published: Published, record: ExecutionRecord | None) -> list[Notice]:
    """The notices the engine decides for this execution (or the example), marked as samples.

    Deciding again with a fresh breaker gives the same texts the run would have sent; the
    action ids get a ``sample/`` prefix so a sample never counts as the real delivery.
    """
    example = example_trigger(published.workflow)
    trigger = trigger_of(record) if record is not None else example
    conditions = list(record.conditions) if record is not None else []
    decision = decide(
        published, trigger, conditions, breaker=BreakerState(), retries_made=0, dry_run=True
    )
    return [replace(n, action_id=f"sample/{n.action_id}") for n in decision.notices]
