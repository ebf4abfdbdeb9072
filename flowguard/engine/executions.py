"""Deciding, per workflow: the second half of the one decision core.

The circuit breaker, retry budgets and every execution's record. Pure, like
:mod:`flowguard.engine.detect`, and run by the live app and replay alike. Two kinds of state,
both on the workflow's partition in the live app:

- the workflow's slot (:class:`WorkflowSlot`): its breaker and the retries made per chain;
- one entry per execution (:class:`Execution`, by execution id): its latest record and what
  deciding sent; an :class:`Alias` where a match made under an older version of the workflow
  was decided by the version the feed held then.

The execution entry is written first. A trigger that comes again after a crash finds it and
re-sends what it holds (the record, commands, scheduled retries, notices still open) rather
than deciding again: the bridge and the action runner deduplicate on the ids, so the effect
happens once. This stage is the only writer of execution records: action outcomes come back
here and each one makes the execution's next record (``seq`` + 1), a full snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from flowguard.engine.breaker import BreakerState
from flowguard.engine.decision import (
    Notice,
    NotifyAction,
    breaker_cluster,
    decide,
    derive_id,
    execution_id,
    settle,
)
from flowguard.engine.matching import Published
from flowguard.engine.workflow import PagerDutyAction, SlackAction, WebhookAction, Workflow
from topics.commands import CommandResult, RetryCommand
from topics.execution import ExecutionRecord
from topics.scheduled import CancelRetry, RetrySent, ScheduledRetry
from topics.triggers import ActionOutcome, CancelExecution, Matched

#: Retry budgets of chains quiet for this long are dropped (a chain's retries end long before).
BUDGET_TTL_SECONDS = 7 * 24 * 3600.0
#: An execution whose actions never settle (an outcome lost for good) is forgotten after this.
STUCK_EXECUTION_SECONDS = 7 * 24 * 3600.0

#: How far along an action's status is; an outcome never moves an action back (a retry's
#: ``sent`` from the bridge can arrive after its task's own ``succeeded``).
STATUS_RANK = {
    "planned": 0, "scheduled": 0, "sent": 1, "stranded": 2,
    "succeeded": 3, "failed": 3, "skipped": 3, "cancelled": 3,
}  # fmt: skip
#: Action statuses after which nothing more is expected for the action.
SETTLED_STATUSES = frozenset(s for s, rank in STATUS_RANK.items() if rank == 3)


@dataclass(slots=True)
class WorkflowSlot:
    """A workflow's breaker. ``budgets``: per retry chain ``(retries made, when last)`` as
    slots written before budgets became entries of their own (:class:`Budget`); read, never
    added to, emptied as those chains retry again or age out."""

    breaker: BreakerState = field(default_factory=BreakerState)
    budgets: dict[str, tuple[int, float]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {"breaker": self.breaker.to_dict(), "budgets": self.budgets}
        return bytes(memoryview(orjson.dumps(data)))

    @classmethod
    def from_json(cls, data: bytes) -> WorkflowSlot:
        slot = orjson.loads(data)
        budgets = {k: (int(v[0]), float(v[1])) for k, v in slot.get("budgets", {}).items()}
        return cls(BreakerState.from_dict(slot.get("breaker", {})), budgets)


@dataclass(slots=True)
class Execution:
    """One execution: its latest record and what deciding sent for it."""

    version: int
    record: ExecutionRecord
    at: float
    commands: list[RetryCommand] = field(default_factory=list)
    scheduled: list[ScheduledRetry] = field(default_factory=list)
    #: ``{"action_id", "text", "dedup"}`` per notice (the action itself is the workflow's).
    notices: list[dict[str, str]] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return self.record.workflow.id

    def to_json(self) -> bytes:
        data = {
            "version": self.version,
            "record": self.record.model_dump(mode="json", by_alias=True),
            "commands": [c.model_dump(mode="json") for c in self.commands],
            "scheduled": [s.model_dump(mode="json") for s in self.scheduled],
            "notices": self.notices,
            "at": self.at,
        }
        return bytes(memoryview(orjson.dumps(data)))


@dataclass(frozen=True, slots=True)
class Alias:
    """A match's own execution id pointing at the execution that decided it."""

    alias: str
    at: float
    workflow_id: str

    def to_json(self) -> bytes:
        data = {"alias": self.alias, "at": self.at, "workflow_id": self.workflow_id}
        return bytes(memoryview(orjson.dumps(data)))


@dataclass(frozen=True, slots=True)
class Budget:
    """A retry chain's budget in one workflow: retries made, and when the last was decided.

    An entry of its own (key :func:`budget_key`, beside the workflow's executions and on its
    partition), not a field of the workflow's slot: a slot holding every chain the workflow
    retried grew with the fleet and was written whole on every execution (72 KB after 1,841
    chains in bench/fleet.py, past Kafka's 1 MB record limit after about 26,000)."""

    made: int
    at: float
    workflow_id: str

    def to_json(self) -> bytes:
        data = {"budget": self.made, "at": self.at, "workflow_id": self.workflow_id}
        return bytes(memoryview(orjson.dumps(data)))


def budget_key(workflow_id: str, chain: str) -> str:
    """Where a chain's budget is kept (never an execution id: those are UUIDs)."""
    return f"budget/{workflow_id}/{chain}"


@dataclass(frozen=True, slots=True)
class ClusterBreaker:
    """One cluster's breaker in a workflow whose breaker is scoped per cluster
    (``circuit_breaker.scope: cluster``): an entry of its own (key :func:`breaker_key`), as a
    :class:`Budget` is, so each execution reads and writes only its cluster's. ``at``: the
    last execution it decided; ``window``: the breaker's window then (for expiry)."""

    state: BreakerState
    at: float
    window: float
    workflow_id: str

    def to_json(self) -> bytes:
        data = {
            "breaker": self.state.to_dict(), "at": self.at, "window": self.window,
            "workflow_id": self.workflow_id,
        }  # fmt: skip
        return bytes(memoryview(orjson.dumps(data)))


def breaker_key(workflow_id: str, cluster: str) -> str:
    """Where a cluster's breaker of a workflow is kept (never an execution id)."""
    return f"breaker/{workflow_id}/{cluster}"


def breaker_expired(at: float, window: float, open_: bool, now: float) -> bool:
    """A cluster's breaker nothing has used for its window (closed: it holds nothing any
    more), or for ``BUDGET_TTL_SECONDS`` beyond that (open: only its closing notice, which no
    execution is left to send)."""
    return now - at >= window + (BUDGET_TTL_SECONDS if open_ else 0.0)


Entry = Execution | Alias | Budget | ClusterBreaker


def load_entry(data: bytes) -> Entry:
    entry: dict[str, Any] = orjson.loads(data)
    if "alias" in entry:
        return Alias(entry["alias"], float(entry["at"]), entry["workflow_id"])
    if "budget" in entry:
        return Budget(int(entry["budget"]), float(entry["at"]), entry["workflow_id"])
    if "breaker" in entry:
        return ClusterBreaker(
            BreakerState.from_dict(entry["breaker"]), float(entry["at"]),
            float(entry["window"]), entry["workflow_id"],
        )  # fmt: skip
    return Execution(
        version=entry["version"],
        record=ExecutionRecord.model_validate(entry["record"]),
        at=float(entry.get("at", 0.0)),
        commands=[RetryCommand.model_validate(c) for c in entry.get("commands", [])],
        scheduled=[ScheduledRetry.model_validate(s) for s in entry.get("scheduled", [])],
        notices=list(entry.get("notices", [])),
    )


@dataclass(slots=True)
class Out:
    records: list[ExecutionRecord] = field(default_factory=list)
    commands: list[RetryCommand] = field(default_factory=list)
    scheduled: list[ScheduledRetry] = field(default_factory=list)
    #: Retries sent at once, to watch on their chains.
    sent: list[RetrySent] = field(default_factory=list)
    cancels: list[CancelRetry] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    #: Entries to write, by execution id.
    writes: dict[str, Entry] = field(default_factory=dict)
    #: Why nothing was decided, when nothing was (for the log).
    ignored: str = ""


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


def open_notices(entry: Execution, published: Published | None) -> list[Notice]:
    """Notices of an execution not delivered yet (after a crash, or a duplicate trigger)."""
    if published is None or published.version != entry.version:
        return []
    record = entry.record
    planned = {a.action_id for a in record.actions if a.status == "planned"}
    notices = []
    for item in entry.notices:
        action = notify_action(published.workflow, item["action_id"])
        if item["action_id"] in planned and action is not None:
            notices.append(Notice(item["action_id"], action, item["text"], item["dedup"], record))
    return notices


def _resend(entry: Execution, published: Published | None) -> Out:
    return Out(
        records=[entry.record],
        commands=list(entry.commands),
        scheduled=list(entry.scheduled),
        sent=_watches(entry.commands, entry.at),
        notices=open_notices(entry, published),
    )


def _watches(commands: list[RetryCommand], at: float) -> list[RetrySent]:
    return [
        RetrySent(chain_key=f"{c.cluster}/{c.root_id}", sent_at=at, command=c) for c in commands
    ]


def on_matched(
    slot: WorkflowSlot | None,
    lookup: Callable[[str], Entry | None],
    item: Matched,
    published: Published | None,
) -> tuple[WorkflowSlot | None, Out]:
    """Decide one execution, or re-send what deciding it sent before.

    A match comes again with the version it was matched under, whatever the workflow is
    now: it is looked up by that version, or a workflow saved in between would decide it
    twice. ``lookup`` reads an execution's entry; what to write is in ``Out.writes``.
    """
    if published is None or not published.workflow.enabled:
        return slot, Out(ignored=f"workflow {item.workflow_id} is gone or disabled")
    trigger = item.trigger
    matched_id = derive_id(item.workflow_id, item.workflow_version, trigger.trigger_id)
    eid = execution_id(published, trigger)
    existing = lookup(matched_id)
    if isinstance(existing, Alias):
        eid, existing = existing.alias, lookup(existing.alias)
    elif existing is not None:
        eid = matched_id
    if isinstance(existing, Execution):
        return slot, _resend(existing, published)
    slot = slot if slot is not None else WorkflowSlot()
    chain = f"{trigger.cluster}/{trigger.task.root_id}" if trigger.task else ""
    key = budget_key(item.workflow_id, chain)
    known = lookup(key) if chain else None
    legacy = slot.budgets.pop(chain, None) if chain else None
    made = known.made if isinstance(known, Budget) else legacy[0] if legacy is not None else 0
    wf = published.workflow
    scoped = breaker_cluster(wf, trigger)
    bkey = breaker_key(item.workflow_id, scoped) if scoped is not None else ""
    held = lookup(bkey) if bkey else None
    breaker = held.state if isinstance(held, ClusterBreaker) else BreakerState()
    decision = decide(
        published,
        trigger,
        list(item.conditions),
        breaker=slot.breaker if not bkey else breaker,
        retries_made=made,
        dry_run=False,
    )
    writes: dict[str, Entry] = {}
    if not bkey:
        slot.breaker = decision.breaker
    elif decision.breaker != breaker:
        window = wf.breaker.window_seconds
        writes[bkey] = ClusterBreaker(decision.breaker, trigger.at, window, item.workflow_id)
    if chain and (decision.retries_made != made or legacy is not None):
        writes[key] = Budget(decision.retries_made, trigger.at, item.workflow_id)
    for old in [k for k, v in slot.budgets.items() if trigger.at - v[1] >= BUDGET_TTL_SECONDS]:
        del slot.budgets[old]
    scheduled = [
        ScheduledRetry(chain_key=p.chain_key, due_at=p.due_at, since=p.since, command=p.command)
        for p in decision.pending
    ]
    entry = Execution(
        version=published.version,
        record=decision.record,
        at=trigger.at,
        commands=list(decision.commands),
        scheduled=scheduled,
        notices=[
            {"action_id": n.action_id, "text": n.text, "dedup": n.dedup_key}
            for n in decision.notices
        ],
    )
    out = Out(
        records=[decision.record],
        commands=list(decision.commands),
        scheduled=scheduled,
        sent=_watches(decision.commands, trigger.at),
        notices=list(decision.notices),
        writes={eid: entry, **writes},
    )
    if eid != matched_id:
        out.writes[matched_id] = Alias(eid, trigger.at, item.workflow_id)
    return slot, out


def on_outcome(entry: Entry | None, item: ActionOutcome) -> tuple[Execution | None, Out]:
    """An action's outcome: the execution's next record. Unknown, repeated or older ones (a
    status before the action's current one), and any word on a settled action (a delivery
    found marked after a crash), change nothing (``None``: nothing to write)."""
    if not isinstance(entry, Execution):
        return None, Out()
    record = entry.record
    action = next((a for a in record.actions if a.action_id == item.action_id), None)
    if action is None or (action.status == item.status and action.detail == item.detail):
        return None, Out()
    if STATUS_RANK[item.status] < STATUS_RANK[action.status] or action.status in SETTLED_STATUSES:
        return None, Out()  # an older word, or one after the action settled for good
    record = settle(record, item.action_id, item.status, item.detail)
    if item.recovered:
        record = record.model_copy(update={"outcome": "skipped", "reason": "recovered"})
    entry.record = record
    return entry, Out(records=[record])


def expired(at: float, statuses: Iterable[str] | None, now: float, retention: float) -> bool:
    """Whether nothing can refer to an execution any more: its trigger (at ``at``) is older
    than ``retention`` and every action has settled (``statuses``; ``None`` for an alias), or
    it has been stuck for a week (a :class:`Budget` expires after ``BUDGET_TTL_SECONDS``).
    A match comes again only within Kafka's uncommitted window,
    outcomes within a delivery's bound or a delayed retry's delay, cancels only while a retry
    waits."""
    age = now - at
    if statuses is None:
        return age > retention
    settled = all(status in SETTLED_STATUSES for status in statuses)
    return age > (retention if settled else max(retention, STUCK_EXECUTION_SECONDS))


def command_outcome(result: CommandResult) -> ActionOutcome | None:
    """The retry action's outcome in a bridge's result: ``done`` -> ``sent`` (published; its
    task's own events settle it later), ``failed`` stays (with the bridge's reason);
    ``duplicate`` says nothing new (the first result did)."""
    if result.workflow_id is None or result.execution_id is None or result.status == "duplicate":
        return None
    detail = f"{result.cluster}: {result.detail}" if result.detail else result.cluster
    return ActionOutcome(
        workflow_id=result.workflow_id,
        execution_id=result.execution_id,
        action_id=result.command_id,
        status="sent" if result.status == "done" else "failed",
        detail=f"published by the bridge ({detail})" if result.status == "done" else detail,
        at=result.at,
    )


def on_cancel(entry: Entry | None, item: CancelExecution) -> tuple[Execution | None, Out]:
    """Execution rollback: its delayed retries not yet due are cancelled, and that is recorded."""
    if not isinstance(entry, Execution):
        return None, Out()
    record = entry.record
    waiting = [a for a in record.actions if a.status == "scheduled" and a.command_id]
    if not waiting:
        return None, Out()
    out = Out()
    by_command = {s.command.command_id: s for s in entry.scheduled}
    detail = f"cancelled by {item.requested_by}" + (f": {item.comment}" if item.comment else "")
    for action in waiting:
        held = by_command.get(action.command_id or "")
        if held is not None:
            out.cancels.append(
                CancelRetry(
                    chain_key=held.chain_key,
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
    entry.record = record
    return entry, out
