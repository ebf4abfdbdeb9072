"""Rehearse: what a draft of workflows decided against what the live version decided.

Pure: two sets of execution records in (the live ones from ``<prefix>.execution-log``, the
draft's from a replay of the same events), one :class:`Comparison` out. Executions are matched
by workflow id and trigger id (``task.failed/<cluster>/<task id>/<ordinal>``: the trigger
event, what it happened to and which occurrence). Of each execution only its final record (the
highest ``seq``) counts, as the execution log's readers are told to do.

What only a live run knows is left out of the comparison: action statuses beyond "carried out
or not" (a live retry ``succeeded``, a replayed one is ``planned``), ``outcome`` ``failure``
(a delivery or retried task failed, not a decision), ids derived from the workflow version,
wall-clock times. What is compared is the *decision*: whether the execution ran or was skipped
(and why), which actions it carried out (type, attempt, delay), and whether it opened the
circuit breaker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from topics.execution import ExecutionRecord
from topics.record import from_iso

#: Action types that page someone; every other non-retry action is a notification.
PAGE_TYPES = frozenset({"pagerduty"})
#: Action types nothing is sent for (a breaker notice with no destination is only logged).
LOG_TYPES = frozenset({"log"})
#: Statuses of an action that was not carried out.
NOT_DONE = frozenset({"skipped", "cancelled"})
#: How many added, removed and changed executions a comparison lists (all are counted).
EXAMPLES = 20


@dataclass(frozen=True, slots=True)
class Decision:
    """What one workflow decided for one trigger, without what only a live run knows."""

    workflow_id: str
    trigger_id: str
    at: float
    subject: str
    verdict: str  # "ran" or "skipped:<reason>"
    actions: tuple[str, ...]  # each carried-out action: "retry#2+60s", "slack"
    breaker_opened: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.workflow_id, self.trigger_id)

    def as_dict(self) -> dict[str, object]:
        return {
            "workflow_id": self.workflow_id,
            "trigger_id": self.trigger_id,
            "at": iso_time(self.at),
            "subject": self.subject,
            "verdict": self.verdict,
            "actions": list(self.actions),
            "breaker_opened": self.breaker_opened,
        }


def decision_of(record: ExecutionRecord) -> Decision:
    """The decision an (final) execution record shows."""
    if record.task is not None:
        subject = f"{record.task.name or '?'} {record.task.id}"
    else:
        subject = record.worker.hostname if record.worker else ""
    verdict = "ran" if record.outcome != "skipped" else f"skipped:{record.reason or ''}"
    actions = tuple(_action(a.type, a.attempt, a.delay_seconds) for a in record.actions
                    if a.status not in NOT_DONE)  # fmt: skip
    return Decision(
        workflow_id=record.workflow.id,
        trigger_id=record.trigger.id,
        at=from_iso(record.trigger.at),
        subject=subject,
        verdict=verdict,
        actions=actions,
        breaker_opened=record.circuit_breaker.transition == "opened",
    )


def _action(kind: str, attempt: int | None, delay_seconds: float | None) -> str:
    text = kind if attempt is None else f"{kind}#{attempt}"
    return text if not delay_seconds else f"{text}+{delay_seconds:g}s"


@dataclass(slots=True)
class Totals:
    """What one side did: executions, and what they sent."""

    executions: int = 0
    skipped: int = 0
    retries: int = 0
    notifications: int = 0
    pages: int = 0
    breaker_openings: int = 0

    def add(self, decision: Decision) -> None:
        self.executions += 1
        self.skipped += decision.verdict != "ran"
        self.breaker_openings += decision.breaker_opened
        for action in decision.actions:
            kind = action.split("#", 1)[0].split("+", 1)[0]
            if kind == "retry":
                self.retries += 1
            elif kind in PAGE_TYPES:
                self.pages += 1
            elif kind not in LOG_TYPES:
                self.notifications += 1

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TOTAL_FIELDS}


TOTAL_FIELDS = ("executions", "skipped", "retries", "notifications", "pages", "breaker_openings")


@dataclass(frozen=True, slots=True)
class Change:
    live: Decision
    draft: Decision
    fields: tuple[str, ...]  # which of verdict, actions, breaker_opened differ

    def as_dict(self) -> dict[str, object]:
        return {"fields": list(self.fields), "live": self.live.as_dict(),
                "draft": self.draft.as_dict()}  # fmt: skip


@dataclass(slots=True)
class Hour:
    """One hour (by trigger time) of the comparison."""

    start: float
    live: Totals = field(default_factory=Totals)
    draft: Totals = field(default_factory=Totals)
    added: int = 0
    removed: int = 0
    changed: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "hour": iso_time(self.start),
            "live": self.live.as_dict(),
            "draft": self.draft.as_dict(),
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
        }


@dataclass(slots=True)
class Comparison:
    """Counts of everything, and the first :data:`EXAMPLES` of each difference by time."""

    live: Totals = field(default_factory=Totals)
    draft: Totals = field(default_factory=Totals)
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    hours: list[Hour] = field(default_factory=list)
    added_examples: list[Decision] = field(default_factory=list)
    removed_examples: list[Decision] = field(default_factory=list)
    changed_examples: list[Change] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, object]:
        return {
            "live": self.live.as_dict(),
            "draft": self.draft.as_dict(),
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "hours": [hour.as_dict() for hour in self.hours],
            "examples": {
                "added": [d.as_dict() for d in self.added_examples],
                "removed": [d.as_dict() for d in self.removed_examples],
                "changed": [c.as_dict() for c in self.changed_examples],
            },
        }


def final_decisions(records: Iterable[ExecutionRecord]) -> dict[tuple[str, str], Decision]:
    """(workflow id, trigger id) -> the decision of its execution's final record.

    Two executions of one trigger and workflow (two versions of the workflow decided it): the
    later version's counts.
    """
    final: dict[str, ExecutionRecord] = {}
    for record in records:
        kept = final.get(record.execution_id)
        if kept is None or record.seq > kept.seq:
            final[record.execution_id] = record
    chosen: dict[tuple[str, str], ExecutionRecord] = {}
    for record in final.values():
        key = (record.workflow.id, record.trigger.id)
        other = chosen.get(key)
        if other is None or _later(record, other):
            chosen[key] = record
    return {key: decision_of(record) for key, record in chosen.items()}


def _later(a: ExecutionRecord, b: ExecutionRecord) -> bool:
    return (a.workflow.version, a.execution_id) > (b.workflow.version, b.execution_id)


def _differences(live: Decision, draft: Decision) -> tuple[str, ...]:
    return tuple(
        name
        for name in ("verdict", "actions", "breaker_opened")
        if getattr(live, name) != getattr(draft, name)
    )


def compare(live: Iterable[ExecutionRecord], draft: Iterable[ExecutionRecord]) -> Comparison:
    """Compare the live records with the draft's; both already limited to the range and the
    workflows rehearsed (see :func:`in_scope`)."""
    before, after = final_decisions(live), final_decisions(draft)
    result = Comparison()
    hours: dict[int, Hour] = {}

    def hour(at: float) -> Hour:
        index = int(at // 3600)
        if index not in hours:
            hours[index] = Hour(start=index * 3600.0)
        return hours[index]

    added: list[Decision] = []
    removed: list[Decision] = []
    changed: list[Change] = []
    for key, decision in before.items():
        result.live.add(decision)
        hour(decision.at).live.add(decision)
        other = after.get(key)
        if other is None:
            removed.append(decision)
            hour(decision.at).removed += 1
            continue
        fields = _differences(decision, other)
        if fields:
            changed.append(Change(decision, other, fields))
            hour(other.at).changed += 1
        else:
            result.unchanged += 1
    for key, decision in after.items():
        result.draft.add(decision)
        hour(decision.at).draft.add(decision)
        if key not in before:
            added.append(decision)
            hour(decision.at).added += 1
    result.added, result.removed, result.changed = len(added), len(removed), len(changed)
    result.added_examples = sorted(added, key=_order)[:EXAMPLES]
    result.removed_examples = sorted(removed, key=_order)[:EXAMPLES]
    result.changed_examples = sorted(changed, key=lambda c: _order(c.draft))[:EXAMPLES]
    result.hours = [hours[index] for index in sorted(hours)]
    return result


def _order(decision: Decision) -> tuple[float, str, str]:
    return (decision.at, decision.workflow_id, decision.trigger_id)


def in_scope(
    record: ExecutionRecord,
    workflow_ids: frozenset[str],
    since: float,
    until: float | None,
    cluster: str | None = None,
) -> bool:
    """Whether a record is one rehearse compares: a rehearsed workflow's, triggered in
    [since, until), of ``cluster``'s tasks or workers when one is given."""
    if record.workflow.id not in workflow_ids:
        return False
    at = from_iso(record.trigger.at)
    if at < since or (until is not None and at >= until):
        return False
    if cluster is None:
        return True
    ref = record.task or record.worker
    return ref is not None and ref.cluster == cluster


def iso_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gate(comparison: Comparison, *, fail_on_change: bool, max_added: int | None,
         max_removed: int | None, max_changed: int | None) -> list[str]:  # fmt: skip
    """Why a CI gate fails (empty: it passes)."""
    reasons: list[str] = []
    if fail_on_change and comparison.differs:
        reasons.append(
            f"the draft decides differently: {comparison.added} added, "
            f"{comparison.removed} removed, {comparison.changed} changed"
        )
    limits = (("added", max_added), ("removed", max_removed), ("changed", max_changed))
    for name, limit in limits:
        count = getattr(comparison, name)
        if limit is not None and count > limit:
            reasons.append(f"{count} executions {name}, more than --max-{name} {limit}")
    return reasons
