"""Detection, per retry chain and per worker: the engine's task and worker state, made durable.

Pure: each function takes a slot (the decoded table value for one key, or ``None``), the
input, and ``now`` where wall-clock absence matters; it returns the slot to store (``None``:
forget the key) and what to send. A slot is owned by whoever holds it: the functions change
it in place, as the engine changes its chains, so one batch of events decodes a key once and
encodes it once. The Faust agent in :mod:`flowguard.live.app` only reads and writes the
tables and sends.

A slot remembers the offset of the last event it applied. Faust commits offsets after the
fact, so after a crash a few events come again; an event at or below that offset is not
applied twice, and the matches it caused are sent again (deciding deduplicates them by
execution id). That is what makes detection exactly-once in effect. The offset travels in
the same slot as the state it produced, so any snapshot of a slot is consistent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from flowguard.engine.matching import WorkflowIndex
from flowguard.engine.tasks import (
    CHAIN_RETENTION_SECONDS,
    Chain,
    apply_task_event,
    orphan_triggers,
    runtime_trigger,
)
from flowguard.engine.workers import (
    DEFAULT_OFFLINE_GRACE_SECONDS,
    WorkerState,
    apply_worker_event,
    expire_worker,
    orphans_now,
)
from topics._base import iso
from topics.commands import RetryCommand
from topics.events import TaskEvent, WorkerEvent
from topics.scheduled import CancelRetry, ScheduledRetry, WorkerGone
from topics.triggers import ActionOutcome, Matched, Trigger

#: How many past offsets keep the matches they caused, for re-sending after a crash.
EMITTED_KEPT = 8
Emitted = dict[str, list[dict[str, Any]]]


@dataclass(slots=True)
class Out:
    """What one step asks the agent to send, and the wall-clock deadlines to watch."""

    matched: list[Matched] = field(default_factory=list)
    gone: list[WorkerGone] = field(default_factory=list)
    commands: list[RetryCommand] = field(default_factory=list)
    outcomes: list[ActionOutcome] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)


def _stored(data: bytes) -> bytes:
    """A copy of exactly its length, to keep. orjson 3.13 hands back its whole output buffer
    (8 KB for a 450-byte slot, measured with tracemalloc): kept in a table of a million chains
    that was 8 GB instead of 0.5."""
    return bytes(memoryview(data))


@dataclass(slots=True)
class ChainSlot:
    """One chain's table value: the chain, its last applied offset, the matches recent
    offsets caused, and the delayed retries held here until due (by command id)."""

    chain: Chain
    offset: int = -1
    emitted: Emitted = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        # dataclasses all the way down: orjson walks them natively
        return _stored(orjson.dumps(self))

    @classmethod
    def from_json(cls, data: bytes) -> ChainSlot:
        slot = orjson.loads(data)
        return cls(Chain.from_dict(slot["chain"]), slot["offset"], slot["emitted"], slot["pending"])


@dataclass(slots=True)
class WorkerSlot:
    """One worker's table value: its liveness, last applied offset and recent matches."""

    worker: WorkerState
    offset: int = -1
    emitted: Emitted = field(default_factory=dict)

    def to_json(self) -> bytes:
        return _stored(orjson.dumps(self))

    @classmethod
    def from_json(cls, data: bytes) -> WorkerSlot:
        slot = orjson.loads(data)
        return cls(WorkerState.from_dict(slot["worker"]), slot["offset"], slot["emitted"])


@dataclass(slots=True)
class GoneSlot:
    """A worker judged offline, as one partition knows it: a start it reported for a time
    up to ``offline_at`` (its events came late) is an orphan; a later one is a new life."""

    offline_at: float

    def to_json(self) -> bytes:
        return _stored(orjson.dumps(self))

    @classmethod
    def from_json(cls, data: bytes) -> GoneSlot:
        return cls(**orjson.loads(data))


def gone_key(partition: int, cluster: str, hostname: str) -> str:
    """Each partition keeps its own mark (one table, one key per partition and worker)."""
    return f"{partition}|{cluster}/{hostname}"


def match(index: WorkflowIndex, trigger: Trigger) -> list[Matched]:
    return [
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
        emitted[str(offset)] = [m.model_dump(mode="json") for m in matched]
        for old in sorted(emitted, key=int)[:-EMITTED_KEPT]:
            del emitted[old]


def _replayed(slot: ChainSlot | WorkerSlot | None, offset: int) -> list[Matched] | None:
    """The matches an already-applied event caused, or ``None`` if the event is new."""
    if slot is None or offset > slot.offset:
        return None
    return [Matched.model_validate(m) for m in slot.emitted.get(str(offset), [])]


# chains -----------------------------------------------------------------------------


def new_chain(key: str, cluster: str) -> ChainSlot:
    root_id = key[len(cluster) + 1 :] if key.startswith(cluster) else key
    return ChainSlot(Chain(cluster=cluster, root_id=root_id))


def chain_deadlines(
    slot: ChainSlot, thresholds: tuple[float, ...], out: Out, retention: float
) -> None:
    for task in slot.chain.tasks.values():
        if task.state == "started" and task.started_at is not None:
            out.deadlines.extend(task.started_at + t for t in thresholds if t not in task.exceeded)
    out.deadlines.extend(p["due_at"] for p in slot.pending.values())
    forget_at = slot.chain.forget_at(retention)
    if forget_at is not None and not slot.pending:
        out.deadlines.append(forget_at)


def _keep(slot: ChainSlot, now: float | None = None, retention: float = 0.0) -> ChainSlot | None:
    """The slot to store; ``None`` (forget the chain) once no rule can need it again: settled,
    or (at a tick) its tasks all final for its retention, and no delayed retry held."""
    if slot.pending:
        return slot
    if slot.chain.settled():
        return None
    if now is None:
        return slot
    forget_at = slot.chain.forget_at(retention)
    return None if forget_at is not None and forget_at <= now else slot


def on_task_event(
    slot: ChainSlot | None,
    key: str,
    event: TaskEvent,
    offset: int,
    index: WorkflowIndex,
    is_offline: Callable[[str, str], bool],
    retention: float = CHAIN_RETENTION_SECONDS,
) -> tuple[ChainSlot | None, Out]:
    out = Out()
    again = _replayed(slot, offset)
    if again is not None:
        out.matched = again
        return slot, out
    if slot is None:
        slot = new_chain(key, event.cluster)
    chain = slot.chain
    task = chain.tasks.get(event.task_id)
    starts = task.starts if task is not None else 0
    trigger = apply_task_event(chain, event)
    triggers = [trigger] if trigger is not None else []
    task = chain.tasks[event.task_id]
    # A start reported by a worker already judged offline (its events came late).
    if task.starts != starts and task.worker and is_offline(chain.cluster, task.worker):
        triggers += orphan_triggers(chain, task.worker, at=event.timestamp, why="already offline")
    for found in triggers:
        out.matched += match(index, found)
    _remember(slot, offset, out.matched)
    chain_deadlines(slot, index.thresholds(), out, retention)
    return _keep(slot), out


def on_chain_tick(
    slot: ChainSlot | None,
    index: WorkflowIndex,
    now: float,
    retention: float = CHAIN_RETENTION_SECONDS,
) -> tuple[ChainSlot | None, Out]:
    """Wall-clock absence for one chain: run-time thresholds passed, delayed retries due, and
    a chain whose tasks are all final forgotten once its retention has passed."""
    out = Out()
    if slot is None:
        return None, out
    chain = slot.chain
    for task_id in sorted(chain.tasks):
        for threshold in index.thresholds():
            trigger = runtime_trigger(chain, task_id, threshold, now=now)
            if trigger is not None:
                out.matched += match(index, trigger)
    pending = slot.pending
    for command_id in sorted(pending, key=lambda c: (pending[c]["due_at"], c)):
        item = ScheduledRetry.model_validate(pending[command_id])
        if item.due_at > now:
            continue
        del pending[command_id]
        recovered = chain.recovered_since(item.command.original_task_id, item.since)
        if recovered is None:
            out.commands.append(item.command)
        out.outcomes.append(
            ActionOutcome(
                workflow_id=item.command.workflow_id,
                execution_id=item.command.execution_id,
                action_id=command_id,
                status="skipped" if recovered else "sent",
                detail=recovered or "",
                recovered=recovered is not None,
                at=iso(now) or "",
            )
        )
    chain_deadlines(slot, index.thresholds(), out, retention)
    return _keep(slot, now, retention), out


def on_scheduled(
    slot: ChainSlot | None, item: ScheduledRetry, cluster: str
) -> tuple[ChainSlot, Out]:
    """Hold a delayed retry on its chain until due (a second copy changes nothing)."""
    if slot is None:
        slot = new_chain(item.chain_key, cluster)
    slot.pending[item.command.command_id] = item.model_dump(mode="json")
    return slot, Out(deadlines=[item.due_at])


def on_cancel(slot: ChainSlot | None, item: CancelRetry) -> ChainSlot | None:
    if slot is None or item.command_id not in slot.pending:
        return slot
    del slot.pending[item.command_id]
    return _keep(slot)


def on_worker_gone(
    slots: dict[str, ChainSlot], gone: WorkerGone, index: WorkflowIndex
) -> tuple[dict[str, ChainSlot], Out]:
    """``task.orphaned`` for what this partition's chains still run on a worker gone offline."""
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
                out.matched += match(index, trigger)
    return changed, out


# workers ----------------------------------------------------------------------------


def _orphans(worker: WorkerState, now: float, why: str, out: Out) -> None:
    """Tell every partition to orphan what the worker still ran, once that is due (at once
    after silence; after a goodbye, once its grace has passed: see engine.workers)."""
    offline_at = orphans_now(worker, now)
    if offline_at is not None:
        out.gone.append(
            WorkerGone(
                cluster=worker.cluster, hostname=worker.hostname, at=now, reason=why,
                started_before=offline_at,
            )
        )  # fmt: skip
    elif worker.orphans_due is not None:
        out.deadlines.append(worker.orphans_due)


def _went_offline(worker: WorkerState, trigger: Trigger, index: WorkflowIndex, out: Out) -> None:
    out.matched += match(index, trigger)
    _orphans(worker, trigger.at, trigger.reason, out)


def on_worker_event(
    slot: WorkerSlot | None,
    event: WorkerEvent,
    offset: int,
    index: WorkflowIndex,
    factor: float,
    grace: float = DEFAULT_OFFLINE_GRACE_SECONDS,
) -> tuple[WorkerSlot, Out]:
    out = Out()
    again = _replayed(slot, offset)
    if again is not None and slot is not None:
        out.matched = again
        return slot, out
    if slot is None:
        slot = WorkerSlot(WorkerState(cluster=event.cluster, hostname=event.hostname))
    worker = slot.worker
    trigger = apply_worker_event(worker, event, grace)
    if trigger is not None:
        _went_offline(worker, trigger, index, out)
    _remember(slot, offset, out.matched)
    if worker.online:
        out.deadlines.append(worker.expires_at(factor))
    return slot, out


def on_worker_tick(
    slot: WorkerSlot | None,
    index: WorkflowIndex,
    now: float,
    factor: float,
    grace: float = DEFAULT_OFFLINE_GRACE_SECONDS,
) -> tuple[WorkerSlot | None, Out]:
    out = Out()
    if slot is None:
        return None, out
    worker = slot.worker
    trigger = expire_worker(worker, now=now, factor=factor)
    if trigger is not None:
        _went_offline(worker, trigger, index, out)
    else:
        _orphans(worker, now, f"worker-offline event; still running {grace:g}s later", out)
        if worker.online:
            out.deadlines.append(worker.expires_at(factor))
    return slot, out
