"""One execution's decision: a workflow whose trigger and conditions matched a trigger event.

The deciding stage (:mod:`flowguard.engine.executions`) calls :func:`decide` once per
execution and :func:`settle` for each outcome that comes back.

Order of checks, each with a reason a person can read in the record:
1. Retry budget: a retry action whose workflow already made ``max_attempts``
   retries for this retry chain is skipped. If no action is left to run, the
   execution is skipped (``max_attempts_reached``) and the breaker not charged.
2. Circuit breaker: open means skipped (``circuit_open``); the execution that
   opens it sends one notice, the first one after it closes sends a summary.
3. Actions, in order: notifications are rendered now; a retry is a command,
   sent now or, with a delay, held until due and re-checked then.

Ids are derived, never random: the execution id from the workflow id, version
and trigger id; each action id from the execution id and its position; a
retry's new Celery task id from the action id. Deciding twice gives the same
ids, which is what lets the bridge and the action runners deduplicate.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

from flowguard.celery_wire.call_args import parse_call_args
from flowguard.engine.breaker import BreakerDecision, BreakerState, check, peek
from flowguard.engine.fingerprint import fingerprint_of
from flowguard.engine.matching import Published
from flowguard.engine.messages import compile_template
from flowguard.engine.retry import delay_for_attempt
from flowguard.engine.workflow import (
    PagerDutyAction,
    RetryAction,
    SlackAction,
    WebhookAction,
    Workflow,
)
from flowguard.errors import ArgsUnrecoverable
from topics.commands import RetryCommand
from topics.execution import (
    ActionResult,
    BreakerRef,
    ConditionResult,
    ExecutionRecord,
    TaskRef,
    TriggerRef,
    WorkerRef,
    WorkflowRef,
)
from topics.record import built, iso
from topics.triggers import TaskContext, Trigger

NotifyAction = SlackAction | WebhookAction | PagerDutyAction
#: A retry's detail when no event told the task's queue (Celery's default sends no task-sent).
QUEUE_UNKNOWN = (
    "queue not known (no task-sent event seen: Celery's task_send_sent_event is off); the "
    "bridge routes it with the cluster's Celery app (flowguard-bridge --app), or refuses it"
)
_NAMESPACE = uuid.UUID("6f0d2a4e-9b1c-5e7a-8d3f-2c4b6a8e0f11")


_NAMESPACE_BYTES = _NAMESPACE.bytes


def derive_id(*parts: object) -> str:
    """A UUID5 over the parts: stable across processes, replays and restarts.

    Exactly ``str(uuid.uuid5(_NAMESPACE, name))`` (tests/unit/test_record_fast_path.py checks
    it), without building a :class:`uuid.UUID` object: half the cost per id."""
    name = "\x1f".join(str(p) for p in parts)
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BreakerLimits(NamedTuple):
    max_executions: int
    window_seconds: float


@dataclass(frozen=True, slots=True)
class Notice:
    """A notification to deliver. Holds the action (with its secrets) in memory only."""

    action_id: str
    action: NotifyAction
    text: str
    dedup_key: str
    record: ExecutionRecord


@dataclass(frozen=True, slots=True)
class PendingRetry:
    """A delayed retry: re-checked against the retry chain when it comes due."""

    due_at: float
    chain_key: str
    since: float
    command: RetryCommand
    record: ExecutionRecord


@dataclass(slots=True)
class Decision:
    record: ExecutionRecord
    breaker: BreakerState
    retries_made: int
    commands: list[RetryCommand] = field(default_factory=list)
    pending: list[PendingRetry] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


@dataclass(slots=True)
class _Draft:
    """What deciding builds up before the record is frozen."""

    execution_id: str
    actions: list[ActionResult] = field(default_factory=list)
    notices: list[tuple[str, NotifyAction, str]] = field(default_factory=list)
    commands: list[RetryCommand] = field(default_factory=list)
    pending: list[tuple[float, RetryCommand]] = field(default_factory=list)
    retries_made: int = 0


def template_values(
    trigger: Trigger, workflow: Workflow, execution_id: str, attempt: int | None
) -> dict[str, str]:
    """The variables a message template can use, all as strings."""
    task = trigger.task
    values = {
        "workflow_name": workflow.name,
        "timestamp": iso(trigger.at) or "",
        "cluster": trigger.cluster,
        "worker": trigger.worker or "",
        "execution_id": execution_id,
        "attempt": "" if attempt is None else str(attempt),
    }
    if task is not None:
        values |= task_variables(task)
    return values


def task_variables(task: TaskContext | TaskRef) -> dict[str, str]:
    """The task's template variables, from the trigger's task or the execution log's alike."""
    return {
        "task_name": task.name or "",
        "task_id": task.id,
        "task_args": task.args or "",
        "task_kwargs": task.kwargs or "",
        "queue": task.queue or "",
        "exception_type": task.exception_type or "",
        "error_message": task.error_message or "",
        "failure_count": str(task.failure_count),
    }


def execution_id(published: Published, trigger: Trigger) -> str:
    """One workflow version's execution for one trigger: the same id however often it is decided."""
    return derive_id(published.workflow.id, published.version, trigger.trigger_id)


def decide(
    published: Published,
    trigger: Trigger,
    conditions: list[ConditionResult],
    *,
    breaker: BreakerState,
    retries_made: int,
    dry_run: bool,
) -> Decision:
    """Decide one execution. ``trigger.at`` is ``now``: deciding never reads a clock."""
    wf = published.workflow
    draft = _Draft(execution_id=execution_id(published, trigger), retries_made=retries_made)
    runnable = [a for a in wf.actions if not _exhausted(a, retries_made)]
    limits = BreakerLimits(wf.breaker.max_executions, wf.breaker.window_seconds)
    if not runnable:
        state = peek(breaker, now=trigger.at, **limits._asdict())
        ref = _breaker_ref(wf, trigger, state, len(breaker.ran_at), None, breaker.suppressed)
        for index, action in enumerate(wf.actions):
            draft.actions.append(_skipped(draft, index, action, "max_attempts_reached"))
        return _finish(
            published, trigger, conditions, draft, ref, breaker, "max_attempts_reached", dry_run
        )
    new_breaker, verdict = check(breaker, now=trigger.at, **limits._asdict())
    ref = _breaker_ref(
        wf, trigger, verdict.state_label, verdict.count, verdict.transition,
        verdict.suppressed_total,
    )  # fmt: skip
    if not verdict.allowed:
        if verdict.transition == "opened":
            _circuit_notice(draft, wf, verdict, trigger)
        return _finish(
            published, trigger, conditions, draft, ref, new_breaker, "circuit_open", dry_run
        )
    for index, action in enumerate(wf.actions):
        _run_action(draft, index, action, wf, trigger, dry_run)
    if verdict.transition == "closed":
        _circuit_notice(draft, wf, verdict, trigger)
    return _finish(published, trigger, conditions, draft, ref, new_breaker, None, dry_run)


def _exhausted(action: object, retries_made: int) -> bool:
    return isinstance(action, RetryAction) and retries_made >= action.max_attempts


def _breaker_ref(
    wf: Workflow, trigger: Trigger, state: str, count: int, transition: str | None,
    suppressed: int,
) -> BreakerRef:  # fmt: skip
    return built(
        BreakerRef,
        state=state,
        count=count,
        max_executions=wf.breaker.max_executions,
        window_seconds=float(wf.breaker.window_seconds),
        transition=transition,
        suppressed=suppressed,
        cluster=breaker_cluster(wf, trigger),
    )


def breaker_cluster(wf: Workflow, trigger: Trigger) -> str | None:
    """The cluster whose breaker decides ``trigger``, or ``None``: the workflow's one breaker."""
    return trigger.cluster if wf.breaker.scope == "cluster" else None


def _skipped(draft: _Draft, index: int, action: object, why: str) -> ActionResult:
    return built(
        ActionResult,
        action_id=f"{draft.execution_id}/{index}",
        type=getattr(action, "type", "action"),
        status="skipped",
        detail=why,
    )


def _run_action(
    draft: _Draft, index: int, action: object, wf: Workflow, trigger: Trigger, dry_run: bool
) -> None:
    if isinstance(action, RetryAction):
        if _exhausted(action, draft.retries_made):
            draft.actions.append(_skipped(draft, index, action, "max_attempts_reached"))
        else:
            _plan_retry(draft, index, action, wf, trigger, dry_run)
        return
    assert isinstance(action, SlackAction | WebhookAction | PagerDutyAction)
    action_id = f"{draft.execution_id}/{index}"
    values = template_values(trigger, wf, draft.execution_id, draft.retries_made or None)
    source = (
        action.summary if isinstance(action, PagerDutyAction) else getattr(action, "message", "")
    )
    text = compile_template(source).render(values) if source else ""
    draft.notices.append((action_id, action, text))
    draft.actions.append(
        built(ActionResult, action_id=action_id, type=action.type, status="planned")
    )


def _plan_retry(
    draft: _Draft, index: int, action: RetryAction, wf: Workflow, trigger: Trigger, dry_run: bool
) -> None:
    action_id = f"{draft.execution_id}/{index}"
    task = trigger.task
    assert task is not None, "retry actions are refused on worker triggers at load time"
    attempt = draft.retries_made + 1
    never = never_retry_reason(action, task)
    if never is not None:
        draft.actions.append(_skipped(draft, index, action, never))
        return
    failure = _retry_refusal(action, task.name, task.args, task.kwargs)
    if failure is not None:
        draft.actions.append(
            built(
                ActionResult,
                action_id=action_id,
                type="retry",
                status="failed",
                detail=failure,
                attempt=attempt,
            )
        )
        return
    delay = delay_for_attempt(
        attempt,
        delay_seconds=action.delay_seconds,
        exponential_backoff=action.exponential_backoff,
        backoff_multiplier=action.backoff_multiplier,
        max_delay_seconds=action.max_delay_seconds,
    )
    due = trigger.at + delay
    command = RetryCommand(
        command_id=action_id,
        cluster=trigger.cluster,
        execution_id=draft.execution_id,
        workflow_id=wf.id,
        issued_at=iso(due) or "",
        task_id=derive_id("retry", action_id),
        original_task_id=task.id,
        name=task.name or "",
        args=(task.args or "()") if action.same_arguments else "()",
        kwargs=(task.kwargs or "{}") if action.same_arguments else "{}",
        queue=task.queue,
        routing_key=task.routing_key,
        root_id=task.root_id,
        parent_id=task.id,
        attempt=attempt,
    )
    draft.retries_made = attempt
    if delay > 0:
        draft.pending.append((due, command))
    else:
        draft.commands.append(command)
    status = "planned" if dry_run else ("scheduled" if delay > 0 else "sent")
    draft.actions.append(
        built(
            ActionResult,
            action_id=action_id,
            type="retry",
            status=status,
            detail="" if task.queue else QUEUE_UNKNOWN,
            queue=task.queue,
            attempt=attempt,
            delay_seconds=float(delay),
            due_at=iso(due),
            command_id=action_id,
            retry_task_id=command.task_id,
        )
    )


def never_retry_reason(action: RetryAction, task: TaskContext) -> str | None:
    """Why this failure is never retried by ``action`` (its fingerprint is listed), or ``None``."""
    if not action.never_retry:
        return None
    found = fingerprint_of(task)
    if found is None or found not in action.never_retry:
        return None
    return f"never_retry: failures with fingerprint {found} are on this workflow's never-retry list"


def _retry_refusal(
    action: RetryAction, name: str | None, args: str | None, kwargs: str | None
) -> str | None:
    """Why this retry cannot be sent exactly, or ``None``. Never a retry with wrong args."""
    if name is None:
        return (
            "task name unknown: flowguard never saw this task's task-sent or task-received "
            "event (enable task_send_sent_event and worker events)"
        )
    if not action.same_arguments:
        return None
    try:
        parse_call_args(args, kwargs)
    except ArgsUnrecoverable as exc:
        return str(exc)
    return None


def _circuit_notice(
    draft: _Draft, wf: Workflow, verdict: BreakerDecision, trigger: Trigger
) -> None:
    target = wf.breaker.notify or next(
        (a for a in wf.actions if isinstance(a, SlackAction | WebhookAction | PagerDutyAction)),
        None,
    )
    scoped = breaker_cluster(wf, trigger)
    where = f"workflow {wf.name}" + (f" on cluster {scoped}" if scoped is not None else "")
    if verdict.transition == "opened":
        suffix, text = (
            "circuit-opened",
            (
                f"Circuit opened for {where}: {wf.breaker.max_executions} executions in "
                f"{wf.breaker.window_seconds:g}s; its actions are suppressed until the window "
                "has room."
            ),
        )
    else:
        suffix, text = (
            "circuit-closed",
            (
                f"Circuit closed for {where}: {verdict.suppressed_total} executions "
                "were suppressed while it was open."
            ),
        )
    action_id = f"{draft.execution_id}/{suffix}"
    if target is None:
        draft.actions.append(
            built(ActionResult, action_id=action_id, type="log", status="succeeded", detail=text)
        )
        return
    draft.notices.append((action_id, target, text))
    draft.actions.append(
        built(ActionResult, action_id=action_id, type=target.type, status="planned", detail=text)
    )


def _outcome(actions: list[ActionResult]) -> str:
    if any(a.status == "failed" for a in actions):
        return "failure"
    return "success"


def _finish(
    published: Published,
    trigger: Trigger,
    conditions: list[ConditionResult],
    draft: _Draft,
    breaker_ref: BreakerRef,
    breaker: BreakerState,
    skipped: str | None,
    dry_run: bool,
) -> Decision:
    wf = published.workflow
    # The engine built every part itself: constructed, not validated again (about 20 us per
    # record). tests/unit/test_record_fast_path.py checks it equals the validated model.
    record = built(
        ExecutionRecord,
        execution_id=draft.execution_id,
        workflow=built(WorkflowRef, id=wf.id, name=wf.name, version=published.version),
        trigger=built(
            TriggerRef,
            id=trigger.trigger_id,
            event=trigger.event,
            at=iso(trigger.at) or "",
            reason=trigger.reason,
        ),
        task=_task_ref(trigger),
        worker=built(WorkerRef, cluster=trigger.cluster, hostname=trigger.worker)
        if trigger.task is None and trigger.worker
        else None,
        conditions=tuple(conditions),
        circuit_breaker=breaker_ref,
        actions=tuple(draft.actions),
        outcome="skipped" if skipped else _outcome(draft.actions),
        reason=skipped,
        dry_run=dry_run,
    )
    chain_key = f"{trigger.cluster}/{trigger.task.root_id}" if trigger.task else ""
    dedup = f"{wf.id}/{incident_key(trigger)}"
    return Decision(
        record=record,
        breaker=breaker,
        retries_made=draft.retries_made,
        commands=draft.commands,
        pending=[
            PendingRetry(due, chain_key, trigger.at, cmd, record) for due, cmd in draft.pending
        ],
        notices=[Notice(aid, act, text, dedup, record) for aid, act, text in draft.notices],
    )


def incident_key(trigger: Trigger) -> str:
    """What one incident is about: a retry chain, or one worker (``cluster/hostname``).

    A notice's ``dedup_key`` is the workflow id and this, so the receiver folds the
    chain's fifth failure into the first one's incident, but a second worker going
    offline opens its own. A worker trigger without a hostname (never seen) is its own.
    """
    if trigger.task is not None:
        return f"{trigger.cluster}/{trigger.task.root_id}"
    return f"{trigger.cluster}/{trigger.worker or trigger.trigger_id}"


def _task_ref(trigger: Trigger) -> TaskRef | None:
    if trigger.task is None:
        return None
    return trigger.task.ref(trigger.cluster, fingerprint_of(trigger.task))


def resolve(
    pending: PendingRetry, recovered: str | None, *, dry_run: bool
) -> tuple[ExecutionRecord, RetryCommand | None]:
    """A delayed retry came due: send it, or skip it because the task recovered meanwhile.

    Gives the execution's second record (``seq`` 1) and the command to send, if any.
    """
    status = "skipped" if recovered else ("planned" if dry_run else "sent")
    record = settle(pending.record, pending.command.command_id, status, recovered or "")
    if recovered:
        record = record.model_copy(update={"outcome": "skipped", "reason": "recovered"})
    return record, None if recovered else pending.command


def settle(
    record: ExecutionRecord, action_id: str, status: str, detail: str = ""
) -> ExecutionRecord:
    """The execution's next record: one action's new status, ``seq`` one higher.

    The outcome follows the actions (any failed action makes it a failure) unless the execution
    was skipped as a whole.
    """
    actions = tuple(
        a.model_copy(update={"status": status, "detail": detail}) if a.action_id == action_id else a
        for a in record.actions
    )
    update: dict[str, object] = {"seq": record.seq + 1, "actions": actions}
    if record.outcome != "skipped":
        update["outcome"] = _outcome(list(actions))
    return record.model_copy(update=update)
