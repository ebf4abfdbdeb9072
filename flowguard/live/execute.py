"""Deciding, per workflow: the circuit breaker, retry budgets and every execution's record.

Pure, like :mod:`flowguard.live.detect`. Two tables, both on the workflow's partition:

- the workflow's slot: its breaker state and the retries made per retry chain;
- one entry per execution (by execution id): its latest record and what deciding sent.

The execution entry is written first. A trigger that comes again after a crash finds it and
re-sends what it holds (the record, commands, scheduled retries, notices still open) rather
than deciding again: the bridge and the action runner deduplicate on the ids, so the effect
happens once. This stage is the only writer of execution records: action outcomes come back
here and each one makes the execution's next record (``seq`` + 1), a full snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowguard.engine.breaker import BreakerState
from flowguard.engine.execute import Notice, NotifyAction, decide, settle
from flowguard.engine.matching import Published
from flowguard.engine.workflow import PagerDutyAction, SlackAction, WebhookAction, Workflow
from topics.commands import CommandResult, RetryCommand
from topics.execution import ExecutionRecord
from topics.scheduled import CancelRetry, ScheduledRetry
from topics.triggers import ActionOutcome, CancelExecution, Matched

Slot = dict[str, Any]
#: Retry budgets of chains quiet for this long are dropped (a chain's retries end long before).
BUDGET_TTL_SECONDS = 7 * 24 * 3600.0
#: An execution whose actions never settle (an outcome lost for good) is forgotten after this.
STUCK_EXECUTION_SECONDS = 7 * 24 * 3600.0


@dataclass(slots=True)
class Out:
    records: list[ExecutionRecord] = field(default_factory=list)
    commands: list[RetryCommand] = field(default_factory=list)
    scheduled: list[ScheduledRetry] = field(default_factory=list)
    cancels: list[CancelRetry] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


def notify_action(workflow: Workflow, action_id: str) -> NotifyAction | None:
    """The action a notice's id names: ``<execution>/<index>`` or ``<execution>/circuit-*``."""
    suffix = action_id.rsplit("/", 1)[-1]
    if suffix.isdigit():
        index = int(suffix)
        action = workflow.actions[index] if index < len(workflow.actions) else None
    else:
        action = (
            workflow.breaker.notify
            or next(
                (a for a in workflow.actions if isinstance(a, SlackAction | WebhookAction)), None
            )
            or next((a for a in workflow.actions if isinstance(a, PagerDutyAction)), None)
        )
    return action if isinstance(action, SlackAction | WebhookAction | PagerDutyAction) else None


def open_notices(entry: Slot, published: Published | None) -> list[Notice]:
    """Notices of an execution not delivered yet (after a crash, or a duplicate trigger)."""
    if published is None or published.version != entry["version"]:
        return []
    record = ExecutionRecord.model_validate(entry["record"])
    planned = {a.action_id for a in record.actions if a.status == "planned"}
    notices = []
    for item in entry.get("notices", []):
        action = notify_action(published.workflow, item["action_id"])
        if item["action_id"] in planned and action is not None:
            notices.append(Notice(item["action_id"], action, item["text"], item["dedup"], record))
    return notices


def _resend(entry: Slot, published: Published | None) -> Out:
    return Out(
        records=[ExecutionRecord.model_validate(entry["record"])],
        commands=[RetryCommand.model_validate(c) for c in entry.get("commands", [])],
        scheduled=[ScheduledRetry.model_validate(s) for s in entry.get("scheduled", [])],
        notices=open_notices(entry, published),
    )


def on_matched(
    slot: Slot | None,
    existing: Slot | None,
    item: Matched,
    published: Published,
) -> tuple[Slot, Slot, Out]:
    """Decide one execution, or re-send what deciding it sent before."""
    if existing is not None:
        return slot or {}, existing, _resend(existing, published)
    trigger = item.trigger
    slot = dict(slot or {})
    budgets: dict[str, list[float]] = dict(slot.get("budgets", {}))
    chain = f"{trigger.cluster}/{trigger.task.root_id}" if trigger.task else ""
    made = int(budgets[chain][0]) if chain in budgets else 0
    decision = decide(
        published,
        trigger,
        list(item.conditions),
        breaker=BreakerState.from_dict(slot.get("breaker", {})),
        retries_made=made,
        dry_run=False,
    )
    slot["breaker"] = decision.breaker.to_dict()
    if chain and decision.retries_made != made:
        budgets[chain] = [decision.retries_made, trigger.at]
    slot["budgets"] = {k: v for k, v in budgets.items() if trigger.at - v[1] < BUDGET_TTL_SECONDS}
    scheduled = [
        ScheduledRetry(chain_key=p.chain_key, due_at=p.due_at, since=p.since, command=p.command)
        for p in decision.pending
    ]
    entry = {
        "version": published.version,
        "record": decision.record.model_dump(mode="json", by_alias=True),
        "commands": [c.model_dump(mode="json") for c in decision.commands],
        "scheduled": [s.model_dump(mode="json") for s in scheduled],
        "notices": [
            {"action_id": n.action_id, "text": n.text, "dedup": n.dedup_key}
            for n in decision.notices
        ],
        "at": trigger.at,
    }
    out = Out(
        records=[decision.record],
        commands=list(decision.commands),
        scheduled=scheduled,
        notices=list(decision.notices),
    )
    return slot, entry, out


#: How far along an action's status is; an outcome never moves an action back (a retry's
#: ``sent`` from the scheduler can arrive after the bridge's ``succeeded``).
STATUS_RANK = {
    "planned": 0, "scheduled": 0, "sent": 1,
    "succeeded": 2, "failed": 2, "skipped": 2, "cancelled": 2,
}  # fmt: skip
#: Action statuses after which nothing more is expected for the action.
SETTLED_STATUSES = frozenset(
    s for s, rank in STATUS_RANK.items() if rank == max(STATUS_RANK.values())
)


def on_outcome(entry: Slot | None, item: ActionOutcome) -> tuple[Slot | None, Out]:
    """An action's outcome: the execution's next record. Unknown, repeated or older ones (a
    status before the action's current one) change nothing."""
    if entry is None:
        return None, Out()
    record = ExecutionRecord.model_validate(entry["record"])
    action = next((a for a in record.actions if a.action_id == item.action_id), None)
    if action is None or (action.status == item.status and action.detail == item.detail):
        return entry, Out()
    if STATUS_RANK[item.status] < STATUS_RANK[action.status]:
        return entry, Out()
    record = settle(record, item.action_id, item.status, item.detail)
    if item.recovered:
        record = record.model_copy(update={"outcome": "skipped", "reason": "recovered"})
    return {**entry, "record": record.model_dump(mode="json", by_alias=True)}, Out(records=[record])


def expired(entry: Slot, now: float, retention: float) -> bool:
    """Whether nothing can refer to this execution any more: its trigger is older than
    ``retention`` and every action has settled (or it has been stuck for a week). A match
    comes again only within Kafka's uncommitted window, outcomes within a delivery's bound or
    a delayed retry's delay, cancels only while a retry waits."""
    age = now - float(entry.get("at", now))
    if "alias" in entry:
        return age > retention
    actions = entry["record"].get("actions", [])
    settled = all(a["status"] in SETTLED_STATUSES for a in actions)
    return age > (retention if settled else max(retention, STUCK_EXECUTION_SECONDS))


def command_outcome(result: CommandResult) -> ActionOutcome | None:
    """The retry action's outcome in a bridge's result: ``done`` -> ``succeeded``, ``failed``
    stays (with the bridge's reason); ``duplicate`` says nothing new (the first result did)."""
    if result.workflow_id is None or result.execution_id is None or result.status == "duplicate":
        return None
    return ActionOutcome(
        workflow_id=result.workflow_id,
        execution_id=result.execution_id,
        action_id=result.command_id,
        status="succeeded" if result.status == "done" else "failed",
        detail=f"{result.cluster}: {result.detail}" if result.detail else result.cluster,
        at=result.at,
    )


def on_cancel(entry: Slot | None, item: CancelExecution) -> tuple[Slot | None, Out]:
    """Execution rollback: its delayed retries not yet due are cancelled, and that is recorded."""
    if entry is None:
        return None, Out()
    record = ExecutionRecord.model_validate(entry["record"])
    waiting = [a for a in record.actions if a.status == "scheduled" and a.command_id]
    if not waiting:
        return entry, Out()
    out = Out()
    by_command = {s["command"]["command_id"]: s for s in entry.get("scheduled", [])}
    detail = f"cancelled by {item.requested_by}" + (f": {item.comment}" if item.comment else "")
    for action in waiting:
        held = by_command.get(action.command_id or "")
        if held is not None:
            out.cancels.append(
                CancelRetry(
                    chain_key=held["chain_key"],
                    command_id=action.action_id,
                    execution_id=record.execution_id,
                    workflow_id=item.workflow_id,
                )
            )
        record = settle(record, action.action_id, "cancelled", detail)
        record = record.model_copy(update={"seq": record.seq - 1})
    record = record.model_copy(
        update={"seq": record.seq + 1, "outcome": "skipped", "reason": "cancelled"}
    )
    out.records.append(record)
    return {**entry, "record": record.model_dump(mode="json", by_alias=True)}, out
