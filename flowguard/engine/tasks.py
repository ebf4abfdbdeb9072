"""Task state per retry chain, joined across Celery events that arrive out of order.

Celery sends ``name``, ``args``, ``kwargs``, ``root_id`` and ``parent_id`` only
on ``task-sent``/``task-received`` and ``queue`` only on ``task-sent``; the
rest are joined here by task id. Arrival order is not logical order: a state
never moves back (a late ``task-sent`` does not undo ``task-started``), except
that a task received or started again on another worker, later than the last
start, is a new delivery (Celery redelivering an orphaned, ``acks_late`` task).

A :class:`Chain` is one retry chain (a root task and every retry of it, Celery's
and flowguard's), the unit the live app keeps per ``cluster/root_id`` key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flowguard.celery_wire.exceptions import split_exception
from flowguard.engine.triggers import task_trigger
from topics.events import TaskEvent, TaskFailed, TaskRetried, TaskSnapshot
from topics.record import from_iso
from topics.triggers import StuckStage, TaskContext, Trigger

# How far each state is along one attempt; a lower rank never overwrites a higher one.
RANK = {
    "new": -1,
    "sent": 0,
    "received": 1,
    "started": 2,
    "succeeded": 3,
    "failed": 3,
    "retried": 3,
    "revoked": 3,
    "rejected": 3,
}
RUNNING = frozenset({"received", "started"})
SETTLED = frozenset({"succeeded", "revoked", "rejected"})
#: No task will report again (short of someone sending it anew).
FINAL = SETTLED | {"failed"}
#: How long a chain whose tasks are all final is kept for its failure counts and recovery
#: checks (delayed retries pin it longer); then it is forgotten, as if it had never failed.
CHAIN_RETENTION_SECONDS = 3600.0
#: How many failure times a task remembers to know a repeat (Celery's own retries of one
#: task id rarely pass a few; each beyond this is a new failure only if not among them).
FAILURE_STAMPS = 32
# Only these event types carry name, args, root_id, ... (Celery sends them nowhere else).
_CARRY_FIELDS = frozenset({"task.sent", "task.received", "task.snapshot"})


@dataclass(slots=True)
class TaskState:
    task_id: str
    root_id: str
    parent_id: str | None = None
    name: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    args: str | None = None
    kwargs: str | None = None
    state: str = "new"
    worker: str | None = None
    attempt: int = 0
    attempt_at: float = 0.0
    starts: int = 0
    started_at: float | None = None
    failures: int = 0
    retried_count: int = 0
    last_failure_at: float | None = None
    exception: str | None = None
    finished_at: float | None = None
    orphaned_start: int = 0
    exceeded: list[float] = field(default_factory=list)
    #: When the task's current wait began: its task-sent while ``sent``, its delivery (or its
    #: ETA, if later) while ``received``; what ``task.stuck`` measures.
    queued_at: float | None = None
    #: ``task.stuck`` fired for the current wait, as ``"<stage>/<threshold>"``.
    stuck: list[str] = field(default_factory=list)
    #: The times of the task-started events of the current attempt (a second one, with no
    #: retry between, is ``task.duplicate_start``).
    start_stamps: list[float] = field(default_factory=list)
    #: The times of its failures seen (task-failed, task-retried), the last
    #: ``FAILURE_STAMPS``: one seen again is the same event, wherever it comes in the stream
    #: (two bridges of one cluster each publish every event).
    failure_stamps: list[float] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    def context(self, failure_count: int, worker: str | None = None) -> TaskContext:
        exc_type, message = split_exception(self.exception)
        return TaskContext(
            id=self.task_id,
            root_id=self.root_id,
            parent_id=self.parent_id,
            name=self.name,
            queue=self.queue,
            routing_key=self.routing_key,
            worker=worker or self.worker,
            args=self.args,
            kwargs=self.kwargs,
            exception=self.exception,
            exception_type=exc_type,
            error_message=message,
            failure_count=failure_count,
            attempt=self.attempt,
            started_at=self.started_at,
        )


@dataclass(slots=True)
class Chain:
    """One retry chain: its tasks by id, and how often any of them failed."""

    cluster: str
    root_id: str
    tasks: dict[str, TaskState] = field(default_factory=dict)
    failures: int = 0
    updated_at: float = 0.0
    #: Task name -> ``[queue, routing_key]`` once any event of the chain told it (a
    #: ``task-sent``, the bridge's own send of a retry, an ``inspect`` snapshot): every later
    #: task of that name in the chain, and so every retry of it, goes there.
    routes: dict[str, list[str | None]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chain:
        tasks = {k: TaskState(**v) for k, v in data["tasks"].items()}
        return cls(**{**data, "tasks": tasks})

    def settled(self) -> bool:
        """Never failed and every task finished: failure counts, orphans, run-time checks and
        recovery checks can no longer need it, so the engine may forget it."""
        return self.failures == 0 and all(t.state in SETTLED for t in self.tasks.values())

    def forget_at(self, retention: float = CHAIN_RETENTION_SECONDS) -> float | None:
        """When a chain that failed may be forgotten, unless an event comes first: ``None``
        while a task may still report (queued, running, or waiting for Celery's own retry).
        Without it every chain that ever failed would be kept for good."""
        if not self.tasks or any(t.state not in FINAL for t in self.tasks.values()):
            return None
        return self.updated_at + retention

    def running_on(self, hostname: str) -> Iterable[TaskState]:
        return (t for t in self.tasks.values() if t.running and t.worker == hostname)

    def recovered_since(self, task_id: str, since: float) -> str | None:
        """Why a retry planned at ``since`` is no longer needed, or ``None`` if it still is."""
        task = self.tasks.get(task_id)
        if task is not None and task.attempt_at > since and task.state != "failed":
            return f"task {task_id} was delivered again ({task.state} on {task.worker})"
        for other in self.tasks.values():
            if other.state == "succeeded" and (other.finished_at or 0.0) > since:
                return f"task {other.task_id} in the retry chain succeeded"
        return None


def chain_key(cluster: str, root_id: str) -> str:
    return f"{cluster}/{root_id}"


def _join(task: TaskState, event: TaskEvent, chain: Chain) -> None:
    """Take what only task-sent/-received carry; the first value seen wins."""
    if task.name is None and event.name is not None:
        task.name, task.args, task.kwargs = event.name, event.args, event.kwargs
    if task.parent_id is None:
        task.parent_id = event.parent_id
    if event.queue is not None:
        if task.queue is None:
            task.queue, task.routing_key = event.queue, event.routing_key
        if task.name is not None:
            chain.routes[task.name] = [event.queue, event.routing_key]
    _route(task, chain)


def _route(task: TaskState, chain: Chain) -> None:
    """A task whose own queue is not known goes where its chain sent its name before."""
    if task.queue is None and task.name is not None and task.name in chain.routes:
        task.queue, task.routing_key = chain.routes[task.name]


def _new_delivery(task: TaskState, event: TaskEvent) -> bool:
    """Received/started again elsewhere, after the last start: Celery redelivered it."""
    return (
        event.hostname is not None
        and task.worker is not None
        and event.hostname != task.worker
        and task.started_at is not None
        and event.timestamp > task.started_at
        and task.state in ("started", "received")
    )


def _wait_from(event: TaskEvent) -> float:
    """When a task sent or delivered now can be expected to move on: a delivered task with an
    ETA (a countdown, Celery's own retry) is not due to start before it."""
    if event.kind == "task.received" and event.eta:
        try:
            return max(event.timestamp, from_iso(event.eta))
        except ValueError:
            return event.timestamp
    return event.timestamp


def _waiting(task: TaskState, event: TaskEvent) -> None:
    task.queued_at, task.stuck = _wait_from(event), []


def _on_queued(task: TaskState, event: TaskEvent, chain: Chain) -> Trigger | None:
    retries = event.retries or 0
    state = _STATE[event.kind]
    if retries > task.attempt or (retries == task.attempt and RANK[task.state] < RANK[state]):
        if retries > task.attempt:
            task.attempt_at = event.timestamp
            task.start_stamps = []
        task.attempt, task.state = retries, state
        _waiting(task, event)
        if state == "received":
            task.worker = event.hostname
    elif event.kind == "task.received" and _new_delivery(task, event):
        task.state, task.worker, task.attempt_at = "received", event.hostname, event.timestamp
        _waiting(task, event)
    return None


def _duplicate_start(task: TaskState, event: TaskEvent, chain: Chain) -> Trigger | None:
    """``task.duplicate_start`` when the task id starts again in the same attempt: no retry
    (Celery's, which counts ``retries`` up) in between, so the broker delivered the message
    twice (a visibility timeout passed, or ``acks_late`` after a worker was lost). A start
    older than the current attempt is a late event of an earlier one, not a duplicate."""
    stamps = task.start_stamps
    if event.timestamp in stamps or event.timestamp < task.attempt_at:
        return None
    stamps.append(event.timestamp)
    if len(stamps) < 2:
        return None
    first = min(stamps[:-1])
    return task_trigger(
        "task.duplicate_start",
        at=event.timestamp,
        cluster=chain.cluster,
        task=task.context(chain.failures, event.hostname),
        ordinal=f"{task.attempt}/{len(stamps)}",
        reason=(
            f"started again on {event.hostname} {event.timestamp - first:.3g}s after its "
            f"first start (start {len(stamps)} of attempt {task.attempt}, no retry between): "
            "the broker delivered it twice"
        ),
    )


def _on_started(task: TaskState, event: TaskEvent, chain: Chain) -> Trigger | None:
    duplicate = _duplicate_start(task, event, chain)
    redelivered = _new_delivery(task, event)
    if RANK[task.state] < RANK["started"] or redelivered:
        if task.started_at == event.timestamp:
            return duplicate  # the same event seen twice
        if redelivered:
            task.attempt_at = event.timestamp
        task.state = "started"
        task.worker = event.hostname or task.worker
        task.started_at = event.timestamp
        task.starts += 1
        task.exceeded = []
    return duplicate


def _on_failure(task: TaskState, event: TaskEvent, chain: Chain) -> Trigger | None:
    if task.last_failure_at == event.timestamp or event.timestamp in task.failure_stamps:
        return None  # the same failure delivered twice
    task.failure_stamps = [*task.failure_stamps[-(FAILURE_STAMPS - 1) :], event.timestamp]
    task.failures += 1
    chain.failures += 1
    task.last_failure_at = event.timestamp
    task.exception = event.exception if isinstance(event, TaskFailed | TaskRetried) else None
    if isinstance(event, TaskRetried):
        # task-retried carries no retries count, but Celery emits one per attempt, in order:
        # the k-th one ends attempt k. If attempt k+1 was already seen, it changes nothing.
        ended, task.retried_count = task.retried_count, task.retried_count + 1
        if task.attempt <= ended:
            task.state, task.finished_at = "retried", event.timestamp
            task.start_stamps = []  # the next start is the next attempt's
        return None
    task.state, task.finished_at = "failed", event.timestamp
    task.worker = event.hostname or task.worker
    _route(task, chain)
    return task_trigger(
        "task.failed",
        at=event.timestamp,
        cluster=chain.cluster,
        task=task.context(chain.failures, event.hostname),
        ordinal=task.failures,
        reason=f"task-failed from {event.hostname}",
    )


def _on_finished(task: TaskState, event: TaskEvent, chain: Chain) -> Trigger | None:
    if RANK[task.state] < RANK["succeeded"]:
        task.state = _STATE[event.kind]
        task.finished_at = event.timestamp
    return None


def _on_snapshot(task: TaskState, event: TaskEvent, chain: Chain) -> Trigger | None:
    """A task the bridge saw in ``inspect()``: known to be running even if we missed its events."""
    if not isinstance(event, TaskSnapshot):
        return None
    state = "started" if event.state == "active" else "received"
    if RANK[task.state] < RANK[state]:
        task.state, task.worker = state, event.hostname
        if state == "received":
            _waiting(task, event)
        if state == "started" and task.started_at is None:
            task.started_at = event.time_start or event.timestamp
            task.starts += 1
    return None


_STATE = {
    "task.sent": "sent",
    "task.received": "received",
    "task.started": "started",
    "task.succeeded": "succeeded",
    "task.failed": "failed",
    "task.retried": "retried",
    "task.revoked": "revoked",
    "task.rejected": "rejected",
    "task.snapshot": "started",
}
_HANDLERS: dict[str, Callable[[TaskState, TaskEvent, Chain], Trigger | None]] = {
    "task.sent": _on_queued,
    "task.received": _on_queued,
    "task.started": _on_started,
    "task.failed": _on_failure,
    "task.retried": _on_failure,
    "task.succeeded": _on_finished,
    "task.revoked": _on_finished,
    "task.rejected": _on_finished,
    "task.snapshot": _on_snapshot,
}


def apply_task_event(chain: Chain, event: TaskEvent) -> Trigger | None:
    """Fold one task event into its chain; return the ``task.failed`` trigger it causes, if any."""
    task = chain.tasks.get(event.task_id)
    if task is None:
        task = TaskState(task_id=event.task_id, root_id=chain.root_id)
        chain.tasks[event.task_id] = task
    kind = event.kind
    if kind in _CARRY_FIELDS:
        _join(task, event, chain)
    if event.timestamp > chain.updated_at:
        chain.updated_at = event.timestamp
    return _HANDLERS[kind](task, event, chain)


def orphan_triggers(
    chain: Chain, hostname: str, *, at: float, why: str, started_before: float | None = None
) -> list[Trigger]:
    """``task.orphaned`` for each task still running on a worker that went offline (once each);
    with ``started_before``, only tasks it started by then (not a restarted worker's own)."""
    found = []
    for task in sorted(chain.running_on(hostname), key=lambda t: t.task_id):
        if task.state != "started" or task.orphaned_start == task.starts:
            continue
        if started_before is not None and (task.started_at or 0.0) > started_before:
            continue
        task.orphaned_start = task.starts
        found.append(
            task_trigger(
                "task.orphaned",
                at=at,
                cluster=chain.cluster,
                task=task.context(chain.failures),
                ordinal=task.starts,
                reason=f"worker {hostname} went offline ({why}) while the task ran",
            )
        )
    return found


def runtime_trigger(chain: Chain, task_id: str, threshold: float, *, now: float) -> Trigger | None:
    """``task.execution_time_exceeded`` once per start and threshold, while the task still runs."""
    task = chain.tasks.get(task_id)
    if task is None or task.state != "started" or task.started_at is None:
        return None
    if threshold in task.exceeded or now - task.started_at < threshold:
        return None
    task.exceeded.append(threshold)
    return task_trigger(
        "task.execution_time_exceeded",
        at=task.started_at + threshold,
        cluster=chain.cluster,
        task=task.context(chain.failures),
        ordinal=f"{task.starts}/{threshold:g}",
        reason=f"still running {threshold:g}s after it started on {task.worker}",
        threshold_seconds=threshold,
    )


#: The state a task waits in, per ``task.stuck`` stage.
WAITING_STATE = {"unreceived": "sent", "unstarted": "received"}


def stuck_trigger(
    chain: Chain, task_id: str, stage: StuckStage, threshold: float, *, now: float
) -> Trigger | None:
    """``task.stuck`` once per wait, stage and threshold, while the task still waits there:
    sent and not received (no worker consumes its queue), or received and not started."""
    task = chain.tasks.get(task_id)
    if task is None or task.state != WAITING_STATE[stage] or task.queued_at is None:
        return None
    key = f"{stage}/{threshold:g}"
    if key in task.stuck or now - task.queued_at < threshold:
        return None
    task.stuck.append(key)
    return task_trigger(
        "task.stuck",
        at=task.queued_at + threshold,
        cluster=chain.cluster,
        task=task.context(chain.failures),
        ordinal=f"{stage}/{task.attempt}@{task.queued_at:.6f}/{threshold:g}",
        reason=_stuck_reason(task, stage, threshold),
        threshold_seconds=threshold,
        stage=stage,
    )


def _stuck_reason(task: TaskState, stage: StuckStage, threshold: float) -> str:
    if stage == "unreceived":
        where = f"queue {task.queue!r}" if task.queue else "its queue (not known to flowguard)"
        return (
            f"sent {threshold:g}s ago and no worker received it: is any worker consuming {where}?"
        )
    return (
        f"received by {task.worker} {threshold:g}s ago and not started: its pool is busy or "
        "blocked, or it prefetched the task behind long ones"
    )
