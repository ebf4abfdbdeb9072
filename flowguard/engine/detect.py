"""Detection, per retry chain and per worker: the first half of the one decision core.

``flowguard worker`` (:mod:`flowguard.live`), ``flowguard replay`` and Test Workflow
(:mod:`flowguard.engine.core`) all run these functions; they differ only in where slots are
kept (Faust tables, or dicts), how a stage's output reaches the next (Kafka, or a call), and
what ``now`` is at a tick (the wall clock, or the event-time clock).

Pure: each function takes a slot (the state of one key, or ``None``), the input, and ``now``
where absence matters; it returns the slot to keep (``None``: forget the key) and an
:class:`Out` of what to send on. A slot is owned by whoever holds it: the functions change it
in place, as one batch of events decodes a key once and encodes it once.

Time: a key's deadlines (a run-time threshold, a task stuck unreceived or unstarted, a
delayed retry, heartbeat expiry, a goodbye's grace, a retry never received, retention) are
judged at a tick, and also before
each event of the key, at the event's time: so the key sees its own events and deadlines in
event-time order whatever the tick's lag, and replay (which ticks in event time) and the live
app decide alike. A trigger found at a deadline is stamped with the deadline, not the tick.

A slot remembers the offset of the last event it applied. Kafka commits offsets after the
fact, so after a crash a few events come again; an event at or below that offset is not
applied twice, and the matches it caused are sent again (deciding deduplicates them by
execution id). The offset travels in the same slot as the state it produced, so any snapshot
of a slot is consistent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel

from flowguard.engine.matching import Thresholds, WorkflowIndex
from flowguard.engine.tasks import (
    CHAIN_RETENTION_SECONDS,
    Chain,
    TaskState,
    apply_task_event,
    orphan_triggers,
    runtime_trigger,
    stuck_trigger,
)
from flowguard.engine.workers import (
    DEFAULT_OFFLINE_GRACE_SECONDS,
    WorkerState,
    apply_worker_event,
    expire_worker,
    orphans_now,
)
from topics.commands import RetryCommand
from topics.events import TaskEvent, WorkerEvent
from topics.record import iso
from topics.scheduled import CancelRetry, RetrySent, ScheduledRetry, WorkerGone
from topics.triggers import ActionOutcome, Matched, StuckStage, Trigger

#: How many past offsets keep the matches they caused, for re-sending after a crash.
EMITTED_KEPT = 8
#: A retry sent and not received by any worker within this long is ``stranded``.
STRANDED_AFTER_SECONDS = 300.0
#: What is mapped to models once decoded.
_MODELS = (ScheduledRetry, RetrySent, Matched)


@dataclass(frozen=True, slots=True)
class Timing:
    """The rules' durations, from the settings (the same for live and replay)."""

    heartbeat_expiry_factor: float = 2.0
    offline_grace_seconds: float = DEFAULT_OFFLINE_GRACE_SECONDS
    chain_retention_seconds: float = CHAIN_RETENTION_SECONDS
    stranded_after_seconds: float = STRANDED_AFTER_SECONDS
    #: Whether retries are really sent (live), so their tasks' events are watched; a dry run
    #: sends nothing.
    watch_retries: bool = True


class Out:
    """What one step asks the driver to send, and the deadlines to watch. (One is made per
    event: written out, its ``__init__`` costs half of a dataclass's factories.)"""

    __slots__ = ("commands", "deadlines", "gone", "matched", "outcomes", "triggers")

    def __init__(self, deadlines: list[float] | None = None) -> None:
        self.matched: list[Matched] = []
        self.triggers: list[Trigger] = []
        self.gone: list[WorkerGone] = []
        self.commands: list[RetryCommand] = []
        self.outcomes: list[ActionOutcome] = []
        self.deadlines: list[float] = deadlines if deadlines is not None else []


def _model(value: object) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__}")


def _stored(slot: object) -> bytes:
    """The slot's JSON, as a copy of exactly its length, to keep. orjson 3.13 hands back its
    whole output buffer (8 KB for a 450-byte slot, measured with tracemalloc): kept in a table
    of a million chains that was 8 GB instead of 0.5."""
    return bytes(memoryview(orjson.dumps(slot, default=_model)))


@dataclass(slots=True)
class ChainSlot:
    """One chain's state: the chain, its last applied offset, the matches recent offsets
    caused, the delayed retries held here until due and the retries sent and not yet
    settled (both by command id)."""

    chain: Chain
    offset: int = -1
    emitted: dict[str, list[Matched]] = field(default_factory=dict)
    pending: dict[str, ScheduledRetry] = field(default_factory=dict)
    sent: dict[str, RetrySent] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return _stored(self)

    @classmethod
    def from_json(cls, data: bytes) -> ChainSlot:
        slot = orjson.loads(data)
        return cls(
            Chain.from_dict(slot["chain"]),
            slot["offset"],
            {k: [Matched.model_validate(m) for m in v] for k, v in slot["emitted"].items()},
            {k: ScheduledRetry.model_validate(v) for k, v in slot["pending"].items()},
            {k: RetrySent.model_validate(v) for k, v in slot.get("sent", {}).items()},
        )


@dataclass(slots=True)
class WorkerSlot:
    """One worker's state: its liveness, last applied offset and recent matches."""

    worker: WorkerState
    offset: int = -1
    emitted: dict[str, list[Matched]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return _stored(self)

    @classmethod
    def from_json(cls, data: bytes) -> WorkerSlot:
        slot = orjson.loads(data)
        emitted = {k: [Matched.model_validate(m) for m in v] for k, v in slot["emitted"].items()}
        return cls(WorkerState.from_dict(slot["worker"]), slot["offset"], emitted)


@dataclass(slots=True)
class GoneSlot:
    """A worker judged offline, as one partition knows it: a start it reported for a time
    up to ``offline_at`` (its events came late) is an orphan; a later one is a new life."""

    offline_at: float

    @classmethod
    def of(cls, gone: WorkerGone) -> GoneSlot:
        """The mark a worker gone offline leaves: up to the last start it is answerable for
        (``started_before``, after a warm shutdown's grace), else the time it went offline."""
        return cls(gone.started_before if gone.started_before is not None else gone.at)

    def to_json(self) -> bytes:
        return _stored(self)

    @classmethod
    def from_json(cls, data: bytes) -> GoneSlot:
        return cls(**orjson.loads(data))


def offline_by(mark: GoneSlot | None, at: float) -> bool:
    """Whether a worker with this mark was judged offline by ``at``: a start it reports for
    then came late and is the gone worker's (an orphan), a later one a new life's."""
    return mark is not None and at <= mark.offline_at


def gone_key(partition: int, cluster: str, hostname: str) -> str:
    """Each partition keeps its own mark (one table, one key per partition and worker)."""
    return f"{partition}|{cluster}/{hostname}"


def match(index: WorkflowIndex, trigger: Trigger, out: Out) -> None:
    """Every workflow the trigger matches, one :class:`Matched` each."""
    out.triggers.append(trigger)
    out.matched += [
        Matched(
            workflow_id=published.workflow.id,
            workflow_version=published.version,
            trigger=trigger,
            conditions=tuple(conditions),
        )
        for published, conditions in index.match(trigger)
    ]


def _remember(slot: ChainSlot | WorkerSlot, offset: int, matched: list[Matched]) -> None:
    slot.offset = offset
    if matched:
        emitted = slot.emitted
        emitted[str(offset)] = list(matched)
        for old in sorted(emitted, key=int)[:-EMITTED_KEPT]:
            del emitted[old]


def _replayed(slot: ChainSlot | WorkerSlot | None, offset: int) -> list[Matched] | None:
    """The matches an already-applied event caused, or ``None`` if the event is new."""
    if slot is None or offset > slot.offset:
        return None
    return list(slot.emitted.get(str(offset), []))


# chains -----------------------------------------------------------------------------


def new_chain(key: str, cluster: str) -> ChainSlot:
    root_id = key[len(cluster) + 1 :] if key.startswith(cluster) else key
    return ChainSlot(Chain(cluster=cluster, root_id=root_id))


def chain_deadlines(slot: ChainSlot, thresholds: Thresholds, timing: Timing, out: Out) -> None:
    """When the chain next needs a look without an event of its own (checked per event: the
    common chain, never failed and nothing held, costs a few attribute reads)."""
    chain = slot.chain
    if thresholds:
        for task in chain.tasks.values():
            _task_deadlines(task, thresholds, out.deadlines)
    if slot.pending or slot.sent:
        out.deadlines.extend(p.due_at for p in slot.pending.values())
        out.deadlines.extend(_watch_due(s, timing) for s in slot.sent.values())
    elif chain.failures:  # only a chain that failed outlives its tasks (see _keep)
        forget_at = chain.forget_at(timing.chain_retention_seconds)
        if forget_at is not None:
            out.deadlines.append(forget_at)


def _task_deadlines(task: TaskState, thresholds: Thresholds, deadlines: list[float]) -> None:
    """A started task's run-time thresholds; a waiting task's ``task.stuck`` ones."""
    if task.state == "started" and task.started_at is not None:
        deadlines.extend(task.started_at + t for t in thresholds.runtime if t not in task.exceeded)
    elif task.queued_at is not None and task.state in _STAGE_OF:
        stage = _STAGE_OF[task.state]
        deadlines.extend(
            task.queued_at + t
            for t in thresholds.stage(stage)
            if f"{stage}/{t:g}" not in task.stuck
        )


_STAGE_OF: dict[str, StuckStage] = {"sent": "unreceived", "received": "unstarted"}


def _keep(slot: ChainSlot, now: float | None = None, retention: float = 0.0) -> ChainSlot | None:
    """The slot to keep; ``None`` (forget the chain) once no rule can need it again: settled,
    or (at a deadline) its tasks all final for its retention, and no retry held or watched."""
    if slot.pending or slot.sent:
        return slot
    if slot.chain.settled():
        return None
    if now is None:
        return slot
    forget_at = slot.chain.forget_at(retention)
    return None if forget_at is not None and forget_at <= now else slot


def _outcome(
    sent: RetrySent | ScheduledRetry, status: str, detail: str, now: float
) -> ActionOutcome:
    command = sent.command
    return ActionOutcome(
        workflow_id=command.workflow_id,
        execution_id=command.execution_id,
        action_id=command.command_id,
        status=status,
        detail=detail,
        recovered=status == "skipped",
        at=iso(now) or "",
    )


def _chain_due(slot: ChainSlot, index: WorkflowIndex, now: float, timing: Timing, out: Out) -> None:
    """Everything of the chain due by ``now``: run-time thresholds passed, delayed retries
    (sent, or skipped when the task recovered meanwhile), retries never received."""
    chain = slot.chain
    _thresholds_due(chain, index, now, out)
    pending = slot.pending
    for command_id in sorted(pending, key=lambda c: (pending[c].due_at, c)):
        item = pending[command_id]
        if item.due_at > now:
            continue
        del pending[command_id]
        recovered = chain.recovered_since(item.command.original_task_id, item.since)
        if recovered is None:
            out.commands.append(item.command)
            if timing.watch_retries:
                slot.sent[command_id] = RetrySent(
                    chain_key=item.chain_key, sent_at=item.due_at, command=item.command
                )
        out.outcomes.append(
            _outcome(item, "skipped" if recovered else "sent", recovered or "", item.due_at)
        )
    for command_id in sorted(slot.sent):
        watched = slot.sent[command_id]
        if _watch_due(watched, timing) > now:
            continue
        if watched.stranded:  # still not received a retention later: stop watching
            del slot.sent[command_id]
        else:
            due = _watch_due(watched, timing)
            slot.sent[command_id] = watched.model_copy(update={"stranded": True})
            queue = watched.command.queue
            where = f"queue {queue!r}" if queue else "its queue (not known to flowguard)"
            why = (
                f"no worker received task {watched.command.task_id} within "
                f"{timing.stranded_after_seconds:g}s: is any worker consuming {where}?"
            )
            out.outcomes.append(_outcome(watched, "stranded", why, due))


def _thresholds_due(chain: Chain, index: WorkflowIndex, now: float, out: Out) -> None:
    """Run-time thresholds passed by a started task; ``task.stuck`` by a waiting one."""
    thresholds = index.thresholds()
    for task_id in sorted(chain.tasks):
        for threshold in thresholds.runtime:
            trigger = runtime_trigger(chain, task_id, threshold, now=now)
            if trigger is not None:
                match(index, trigger, out)
        stage = _STAGE_OF.get(chain.tasks[task_id].state)
        if stage is not None:
            for threshold in thresholds.stage(stage):
                trigger = stuck_trigger(chain, task_id, stage, threshold, now=now)
                if trigger is not None:
                    match(index, trigger, out)


def _watch_due(watched: RetrySent, timing: Timing) -> float:
    """When a watched retry is stranded; once it is, when watching it stops."""
    due = watched.sent_at + timing.stranded_after_seconds
    return due + timing.chain_retention_seconds if watched.stranded else due


def _watch(slot: ChainSlot, task: TaskState, now: float, out: Out) -> None:
    """A retry flowguard sent reports back through its own task's events: once it is final,
    the retry action settles ``succeeded`` or ``failed`` with what the task itself did."""
    watched = next((s for s in slot.sent.values() if s.command.task_id == task.task_id), None)
    if watched is None:
        return
    where = f" on {task.worker}" if task.worker else ""
    if task.state == "succeeded":
        status, detail = "succeeded", f"the retried task ran and succeeded{where}"
    elif task.state == "failed":
        status, detail = "failed", f"the retried task failed{where}: {task.exception or ''}"
    elif task.state in ("revoked", "rejected"):
        status, detail = "failed", f"the retried task was {task.state}{where}"
    else:
        return
    del slot.sent[watched.command.command_id]
    out.outcomes.append(_outcome(watched, status, detail, now))


def on_task_event(
    slot: ChainSlot | None,
    key: str,
    event: TaskEvent,
    offset: int,
    index: WorkflowIndex,
    is_offline: Callable[[str, str, float], bool],
    timing: Timing,
) -> tuple[ChainSlot | None, Out]:
    """Apply one task event to its chain (``is_offline(cluster, hostname, at)``: whether a
    worker was judged offline by ``at``)."""
    out = Out()
    thresholds = index.thresholds()
    if slot is None:
        slot = new_chain(key, event.cluster)
    elif offset <= slot.offset:  # applied before a crash: send what it caused again
        out.matched = list(slot.emitted.get(str(offset), ()))
        return slot, out
    elif slot.pending or slot.sent or thresholds:
        _chain_due(slot, index, event.timestamp, timing, out)
    chain = slot.chain
    task = chain.tasks.get(event.task_id)
    starts = task.starts if task is not None else 0
    trigger = apply_task_event(chain, event)
    task = chain.tasks[event.task_id]
    if trigger is not None:
        match(index, trigger, out)
    # A start reported by a worker already judged offline (its events came late).
    if (
        task.starts != starts
        and task.worker
        and is_offline(chain.cluster, task.worker, event.timestamp)
    ):
        for orphan in orphan_triggers(
            chain, task.worker, at=event.timestamp, why="already offline"
        ):
            match(index, orphan, out)
    if slot.sent:
        _watch(slot, task, event.timestamp, out)
    if out.matched:
        _remember(slot, offset, out.matched)
    else:
        slot.offset = offset
    if thresholds or slot.pending or slot.sent or chain.failures:
        chain_deadlines(slot, thresholds, timing, out)
    elif chain.settled():
        return None, out  # never failed, every task settled, nothing held: forget it
    return _keep(slot), out


def on_chain_tick(
    slot: ChainSlot | None, index: WorkflowIndex, now: float, timing: Timing
) -> tuple[ChainSlot | None, Out]:
    """Absence for one chain at ``now``: what came due (see :func:`_chain_due`), and a chain
    whose tasks are all final forgotten once its retention has passed."""
    out = Out()
    if slot is None:
        return None, out
    _chain_due(slot, index, now, timing, out)
    chain_deadlines(slot, index.thresholds(), timing, out)
    return _keep(slot, now, timing.chain_retention_seconds), out


def on_scheduled(
    slot: ChainSlot | None, item: ScheduledRetry, cluster: str
) -> tuple[ChainSlot, Out]:
    """Hold a delayed retry on its chain until due (a second copy changes nothing)."""
    if slot is None:
        slot = new_chain(item.chain_key, cluster)
    slot.pending[item.command.command_id] = item
    return slot, Out(deadlines=[item.due_at])


def on_retry_sent(
    slot: ChainSlot | None, item: RetrySent, timing: Timing
) -> tuple[ChainSlot | None, Out]:
    """Watch a retry the bridge published: its own task's events will settle it. A retry
    whose task already reported (its events came first) settles at once."""
    out = Out()
    if slot is None:
        return None, out  # the chain is forgotten: its tasks settled long ago
    command = item.command
    if command.command_id in slot.sent:
        return slot, out
    slot.sent[command.command_id] = item
    task = slot.chain.tasks.get(command.task_id)
    if task is not None:
        _watch(slot, task, item.sent_at, out)
    if command.command_id in slot.sent:
        out.deadlines.append(item.sent_at + timing.stranded_after_seconds)
    return slot, out


def on_cancel(slot: ChainSlot | None, item: CancelRetry) -> ChainSlot | None:
    if slot is None or item.command_id not in slot.pending:
        return slot
    del slot.pending[item.command_id]
    return _keep(slot)


def on_worker_gone(
    slots: dict[str, ChainSlot], gone: WorkerGone, index: WorkflowIndex
) -> tuple[dict[str, ChainSlot], Out]:
    """``task.orphaned`` for what these chains still run on a worker gone offline."""
    out, changed = Out(), {}
    for key in sorted(slots):
        slot = slots[key]
        if slot.chain.cluster != gone.cluster:
            continue
        found = orphan_triggers(
            slot.chain, gone.hostname, at=gone.at, why=gone.reason,
            started_before=gone.started_before,
        )  # fmt: skip
        if found:
            changed[key] = slot
            for trigger in found:
                match(index, trigger, out)
    return changed, out


# workers ----------------------------------------------------------------------------


def _worker_due(
    worker: WorkerState, index: WorkflowIndex, now: float, timing: Timing, out: Out
) -> None:
    """Heartbeats stopped by ``now``: offline; a goodbye's grace over: its tasks orphaned."""
    trigger = expire_worker(worker, now=now, factor=timing.heartbeat_expiry_factor)
    if trigger is not None:
        match(index, trigger, out)
        why = trigger.reason
    else:
        grace = timing.offline_grace_seconds
        why = f"worker-offline event; still running {grace:g}s later"
    _orphans(worker, now, why, out)


def _orphans(worker: WorkerState, now: float, why: str, out: Out) -> None:
    """Tell every partition to orphan what the worker still ran, once that is due (at once
    after silence; after a goodbye, once its grace has passed: see engine.workers). Stamped
    with the time it became due, whenever it is noticed."""
    due = worker.orphans_due
    offline_at = orphans_now(worker, now)
    if offline_at is not None and due is not None:
        out.gone.append(
            WorkerGone(
                cluster=worker.cluster, hostname=worker.hostname, at=due, reason=why,
                started_before=offline_at,
            )
        )  # fmt: skip
    elif worker.orphans_due is not None:
        out.deadlines.append(worker.orphans_due)


def on_worker_event(
    slot: WorkerSlot | None,
    event: WorkerEvent,
    offset: int,
    index: WorkflowIndex,
    timing: Timing,
) -> tuple[WorkerSlot, Out]:
    out = Out()
    again = _replayed(slot, offset)
    if again is not None and slot is not None:
        out.matched = again
        return slot, out
    if slot is None:
        slot = WorkerSlot(WorkerState(cluster=event.cluster, hostname=event.hostname))
    else:
        _worker_due(slot.worker, index, event.timestamp, timing, out)
    worker = slot.worker
    trigger = apply_worker_event(worker, event, timing.offline_grace_seconds)
    if trigger is not None:
        match(index, trigger, out)
        _orphans(worker, trigger.at, trigger.reason, out)
    _remember(slot, offset, out.matched)
    if worker.online:
        out.deadlines.append(worker.expires_at(timing.heartbeat_expiry_factor))
    return slot, out


def on_worker_tick(
    slot: WorkerSlot | None, index: WorkflowIndex, now: float, timing: Timing
) -> tuple[WorkerSlot | None, Out]:
    out = Out()
    if slot is None:
        return None, out
    worker = slot.worker
    _worker_due(worker, index, now, timing, out)
    if worker.online:
        out.deadlines.append(worker.expires_at(timing.heartbeat_expiry_factor))
    return slot, out
