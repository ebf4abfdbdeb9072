"""Bulk remediation, the pure part: which tasks a filter selects, what each retry or revoke
command is (or why it is refused), how a run is paced, what each action records on the
execution log, and what undoing a wave cancels.

Nothing here reads a clock or does I/O: ``now`` is passed in, events and records are handed
over, and the commands and records come back. The adapters (``flowguard/cli/remediate.py``,
``flowguard/api/remediate.py``) read ``<prefix>.events`` and the execution log, send, and sleep.

Selection works on the bridges' normalized events in a time range. Celery names a task, its
args and queue only on ``task-sent``/``task-received``, so :class:`Collector` keeps what each
task said before it failed. A failure whose chain later succeeded (a workflow's retry, say) is
recovered and not selected again. ``retry`` selects failed tasks; ``revoke`` selects tasks sent
or received but not finished (stuck or queued ones).

Each action's command id is ``remediate/<run>/<cluster>/<task id>``: running the same named
run again sends the same ids, which the bridge answers ``duplicate`` (it claims ids in Redis),
so a run resumed after an abort never retries a task twice.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flowguard.celery_wire.call_args import parse_call_args
from flowguard.celery_wire.exceptions import split_exception
from flowguard.engine.decision import derive_id
from flowguard.engine.fingerprint import fingerprint
from flowguard.engine.workflow import compile_regex
from flowguard.errors import ArgsUnrecoverable
from topics.commands import RetryCommand, RevokeCommand
from topics.execution import (
    ActionResult,
    ActionStatus,
    BreakerRef,
    ExecutionRecord,
    TaskRef,
    TriggerRef,
    WorkflowRef,
)
from topics.record import iso

Kind = Literal["retry", "revoke"]
#: The prefix of a bulk run's workflow id on the execution log (``remediate.incident-4211``).
RUN_PREFIX = "remediate."
#: Most tasks one run may act on unless an admin sets another ceiling.
DEFAULT_CEILING = 1000
MAX_RATE = 1000.0
_SLUG = re.compile(r"[^a-z0-9]+")
_TERMINAL = frozenset({"task.succeeded", "task.failed", "task.revoked", "task.rejected"})
#: Terminal states neither a retry (failed tasks) nor a revoke (unfinished ones) selects.
_FORGOTTEN = frozenset({"task.succeeded", "task.revoked", "task.rejected"})


def run_id(name: str) -> str:
    """The run's id from its name: ``"Incident 4211"`` -> ``incident-4211``. ValueError when
    the name has no letter or digit."""
    slug = _SLUG.sub("-", name.lower()).strip("-")[:80]
    if not slug:
        raise ValueError("name: give the run a name with letters or digits ('incident 4211')")
    return slug


@dataclass(frozen=True, slots=True)
class Filter:
    """What a bulk run selects. Every field given must match; globs for names and queues."""

    task: str | None = None
    exception: str | None = None
    error: str | None = None
    clusters: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    fingerprint: str | None = None
    since: float | None = None
    until: float | None = None
    # RE2, like error_pattern: linear in the message, so no filter can stall the API's loop.
    _error: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.error is not None:
            try:
                object.__setattr__(self, "_error", compile_regex(self.error))
            except ValueError as exc:
                raise ValueError(f"error: not a regular expression: {exc}") from None
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until: must be later than since")

    def refuse_for(self, kind: Kind) -> None:
        """A revoke selects unfinished tasks, which have no error: say so rather than match
        nothing."""
        if kind == "revoke":
            for name in ("exception", "error", "fingerprint"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only a retry filters by error (a revoke "
                                     "selects tasks that have not finished)")  # fmt: skip

    def matches(self, task: Candidate) -> bool:
        if self.clusters and task.cluster not in self.clusters:
            return False
        if self.task is not None and not fnmatch.fnmatchcase(task.name or "", self.task):
            return False
        if self.queues and not any(fnmatch.fnmatchcase(task.queue or "", q) for q in self.queues):
            return False
        if self.since is not None and task.at < self.since:
            return False
        if self.until is not None and task.at >= self.until:
            return False
        if self.exception is not None and not fnmatch.fnmatchcase(
            task.exception_type or "", self.exception
        ):
            return False
        if self._error is not None and not self._error.search(task.error_message or ""):
            return False
        return self.fingerprint is None or task.fingerprint == self.fingerprint


@dataclass(frozen=True, slots=True)
class Candidate:
    """A task a run may act on: what its events said, and when it failed (or was last seen)."""

    cluster: str
    task_id: str
    at: float
    state: str
    name: str | None = None
    args: str | None = None
    kwargs: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    exception_type: str | None = None
    error_message: str | None = None

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.name, self.exception_type, self.error_message)

    def summary(self) -> dict[str, object]:
        return {
            "cluster": self.cluster, "task_id": self.task_id, "name": self.name,
            "queue": self.queue, "at": iso(self.at), "state": self.state, "args": self.args,
            "kwargs": self.kwargs, "exception_type": self.exception_type,
            "error_message": self.error_message, "fingerprint": self.fingerprint,
        }  # fmt: skip


class Collector:
    """Feed it the range's events in order; :meth:`candidates` are the tasks to act on."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str], dict[str, object]] = {}
        self._succeeded_roots: dict[tuple[str, str], float] = {}

    def feed(self, event: object) -> None:
        kind = getattr(event, "kind", "")
        if not kind.startswith("task."):
            return
        cluster: str = getattr(event, "cluster")  # noqa: B009
        task_id: str = getattr(event, "task_id")  # noqa: B009
        known = self._tasks.setdefault((cluster, task_id), {})
        for name in ("name", "args", "kwargs", "queue", "routing_key", "root_id", "parent_id"):
            value = getattr(event, name, None)
            if value is not None:
                known[name] = value
        if kind == "task.snapshot":
            kind = "task.started" if getattr(event, "state", "") == "active" else "task.received"
        known["state"] = kind
        known["at"] = getattr(event, "timestamp")  # noqa: B009
        if kind == "task.failed":
            known["exception"] = getattr(event, "exception", None)
        if kind in _FORGOTTEN:
            # Neither selection takes it: forget it, so memory grows with the failed and
            # unfinished tasks in the range, not with all of them. A success recovers its chain.
            del self._tasks[cluster, task_id]
            if kind == "task.succeeded":
                root = str(known.get("root_id") or task_id)
                self._succeeded_roots[cluster, root] = float(getattr(event, "timestamp"))  # noqa: B009

    @property
    def tracked(self) -> int:
        """Tasks held: the failed and unfinished ones (finished otherwise are forgotten)."""
        return len(self._tasks)

    def candidates(self, kind: Kind) -> list[Candidate]:
        """``retry``: failed tasks whose chain did not succeed after; ``revoke``: tasks not
        finished. In the order they failed (or were last seen)."""
        found: list[Candidate] = []
        for (cluster, task_id), known in self._tasks.items():
            state = str(known.get("state"))
            at = float(known["at"])  # type: ignore[arg-type]
            if kind == "retry":
                if state != "task.failed":
                    continue
                root = str(known.get("root_id") or task_id)
                if self._succeeded_roots.get((cluster, root), -math.inf) > at:
                    continue
            elif state in _TERMINAL or state == "task.retried":
                continue
            exc_type, message = split_exception(known.get("exception"))  # type: ignore[arg-type]
            found.append(
                Candidate(
                    cluster=cluster,
                    task_id=task_id,
                    at=at,
                    state=state,
                    name=_text(known, "name"),
                    args=_text(known, "args"),
                    kwargs=_text(known, "kwargs"),
                    queue=_text(known, "queue"),
                    routing_key=_text(known, "routing_key"),
                    root_id=_text(known, "root_id"),
                    parent_id=_text(known, "parent_id"),
                    exception_type=exc_type,
                    error_message=message,
                )
            )
        found.sort(key=lambda c: (c.at, c.cluster, c.task_id))
        return found


def _text(known: dict[str, object], name: str) -> str | None:
    value = known.get(name)
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Preview:
    count: int
    sample: tuple[Candidate, ...]
    by_cluster: dict[str, int]
    by_name: dict[str, int]


def select(candidates: Iterable[Candidate], where: Filter) -> list[Candidate]:
    return [c for c in candidates if where.matches(c)]


def preview(selected: Sequence[Candidate], sample_size: int = 10) -> Preview:
    by_cluster: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for c in selected:
        by_cluster[c.cluster] = by_cluster.get(c.cluster, 0) + 1
        by_name[c.name or "?"] = by_name.get(c.name or "?", 0) + 1
    return Preview(len(selected), tuple(selected[:sample_size]), by_cluster, by_name)


def check_ceiling(count: int, ceiling: int) -> None:
    """ValueError when a run would act on more tasks than its ceiling allows."""
    if count > ceiling:
        raise ValueError(
            f"ceiling: the filter selects {count} tasks, more than this run's ceiling of "
            f"{ceiling}; narrow the filter or ask an admin for a higher ceiling"
        )


def check_rate(rate: float) -> float:
    if not (math.isfinite(rate) and 0 < rate <= MAX_RATE):
        raise ValueError(f"rate: tasks per second, more than 0 and at most {MAX_RATE:g}")
    return rate


def wait_before(last: float | None, rate: float, now: float) -> float:
    """Seconds to wait before the next action so that actions are at least ``1/rate`` apart,
    counted from the last one (``None``: none yet). A stall is never caught up with a burst:
    the rate is a ceiling at every moment, not an average."""
    if last is None:
        return 0.0
    return max(0.0, last + 1.0 / rate - now)


@dataclass(frozen=True, slots=True)
class Action:
    """One task's action: its command, or why it is refused (nothing is sent then)."""

    candidate: Candidate
    command_id: str
    command: RetryCommand | RevokeCommand | None
    refused: str | None = None


def plan(run: str, kind: Kind, candidate: Candidate, now: float) -> Action:
    """The command for ``candidate`` in run ``run`` (its id), or the reason it is refused,
    as a workflow's retry is refused: never a retry with other args than the original's."""
    command_id = f"remediate/{run}/{candidate.cluster}/{candidate.task_id}"
    if kind == "revoke":
        revoke = RevokeCommand(
            command_id=command_id, cluster=candidate.cluster, issued_at=iso(now) or "",
            task_id=candidate.task_id, execution_id=command_id,
        )  # fmt: skip
        return Action(candidate, command_id, revoke)
    refused = retry_refusal(candidate)
    if refused is not None:
        return Action(candidate, command_id, None, refused)
    retry = RetryCommand(
        command_id=command_id, cluster=candidate.cluster, execution_id=command_id,
        workflow_id=RUN_PREFIX + run, issued_at=iso(now) or "",
        task_id=derive_id("retry", command_id), original_task_id=candidate.task_id,
        name=candidate.name or "", args=candidate.args or "()",
        kwargs=candidate.kwargs or "{}", queue=candidate.queue,
        routing_key=candidate.routing_key, root_id=candidate.root_id or candidate.task_id,
        parent_id=candidate.task_id, attempt=1,
    )  # fmt: skip
    return Action(candidate, command_id, retry)


def retry_refusal(candidate: Candidate) -> str | None:
    """Why the task cannot be sent again exactly as it was, or ``None``."""
    if candidate.name is None:
        return (
            "task name unknown: flowguard never saw this task's task-sent or task-received "
            "event (enable task_send_sent_event and worker events)"
        )
    try:
        parse_call_args(candidate.args, candidate.kwargs)
    except ArgsUnrecoverable as exc:
        return str(exc)
    return None


def record(
    run: str,
    name: str,
    actor: str,
    kind: Kind,
    action: Action,
    status: ActionStatus,
    detail: str,
    index: int,
    ceiling: int,
    now: float,
) -> ExecutionRecord:
    """The execution-log record of one action of a bulk run (schema ``flowguard.execution/1``
    unchanged): the run is the workflow (``remediate.<run>``, version 0), the action's
    command id the execution id, the breaker the run's ceiling."""
    c = action.candidate
    command = action.command
    retry_task_id = command.task_id if isinstance(command, RetryCommand) else None
    return ExecutionRecord(
        execution_id=action.command_id,
        workflow=WorkflowRef(id=RUN_PREFIX + run, name=name, version=0),
        trigger=TriggerRef(
            id=action.command_id,
            event=f"remediate.{kind}",
            at=iso(c.at) or "",
            reason=f"bulk {kind} {name!r} by {actor}",
        ),
        task=TaskRef(
            cluster=c.cluster,
            id=c.task_id,
            root_id=c.root_id or c.task_id,
            parent_id=c.parent_id,
            name=c.name,
            queue=c.queue,
            args=c.args,
            kwargs=c.kwargs,
            exception_type=c.exception_type,
            error_message=c.error_message,
            fingerprint=c.fingerprint,
        ),
        circuit_breaker=BreakerRef(
            state="closed", count=index + 1, max_executions=ceiling, window_seconds=0
        ),
        actions=(
            ActionResult(
                action_id=action.command_id,
                type=kind,
                status=status,
                detail=detail,
                attempt=1 if kind == "retry" else None,
                command_id=action.command_id,
                retry_task_id=retry_task_id,
                queue=c.queue,
            ),
        ),
        outcome="failure" if status == "failed" else "success",
        recorded_at=iso(now),
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """A retry a workflow or a run scheduled or sent that has not settled."""

    workflow_id: str
    execution_id: str
    command_id: str
    cluster: str
    root_id: str
    retry_task_id: str
    status: ActionStatus


def pending_retries(records: Iterable[ExecutionRecord], workflow_id: str) -> list[Pending]:
    """Retries of ``workflow_id`` still ``scheduled`` or ``sent``: the last record of each
    action wins (a later ``seq`` or a settled status takes it out)."""
    last: dict[str, Pending] = {}
    for rec in records:
        if rec.workflow.id != workflow_id or rec.task is None:
            continue
        for a in rec.actions:
            if a.type != "retry" or a.command_id is None:
                continue
            if a.status not in ("scheduled", "sent") or a.retry_task_id is None:
                last.pop(a.command_id, None)
                continue
            last[a.command_id] = Pending(
                workflow_id=workflow_id, execution_id=rec.execution_id,
                command_id=a.command_id, cluster=rec.task.cluster, root_id=rec.task.root_id,
                retry_task_id=a.retry_task_id, status=a.status,
            )  # fmt: skip
    return list(last.values())


def undo_record(
    workflow_id: str, name: str, actor: str, cancelled: Sequence[Pending], now: float
) -> ExecutionRecord:
    """The record of an undo: one ``cancelled`` action per retry revoked (its command id and
    the task id it was or would be sent as)."""
    at = iso(now) or ""
    undo_id = derive_id("undo", workflow_id, at)
    return ExecutionRecord(
        execution_id=f"undo/{undo_id}",
        workflow=WorkflowRef(id=workflow_id, name=name, version=0),
        trigger=TriggerRef(
            id=undo_id,
            event="remediate.undo",
            at=at,
            reason=f"undo by {actor}: {len(cancelled)} pending retries revoked",
        ),
        circuit_breaker=BreakerRef(
            state="closed", count=0, max_executions=max(1, len(cancelled)), window_seconds=0
        ),
        actions=tuple(
            ActionResult(
                action_id=f"undo/{undo_id}/{i}",
                type="revoke",
                status="cancelled",
                detail=f"{p.status} retry of execution {p.execution_id} on {p.cluster}",
                command_id=p.command_id,
                retry_task_id=p.retry_task_id,
            )
            for i, p in enumerate(cancelled)
        ),
        outcome="success",
        recorded_at=at,
    )


def revoke_for(pending: Pending, now: float) -> RevokeCommand:
    """Revoke the retry's task id: a delayed one not yet sent is then dropped by the worker
    when it arrives, a sent one not yet started is never run."""
    command_id = f"undo/{pending.command_id}"
    return RevokeCommand(
        command_id=command_id, cluster=pending.cluster, issued_at=iso(now) or "",
        task_id=pending.retry_task_id, execution_id=pending.execution_id,
    )  # fmt: skip
