"""The engine in one process: detection, matching and deciding over an event stream.

``replay`` and the Test Workflow button run this; the live Faust app runs the
same functions (:mod:`tasks`, :mod:`workers`, :mod:`matching`, :mod:`execute`)
split across partitions. Time is event time: the clock is the latest event
timestamp seen (it never goes back), and absence (no heartbeat, still running,
a delayed retry coming due) is judged against it, so a replay of the same
events decides the same way, byte for byte.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowguard.engine.breaker import BreakerState
from flowguard.engine.execute import Notice, PendingRetry, decide, resolve
from flowguard.engine.matching import Published, WorkflowIndex
from flowguard.engine.tasks import (
    CHAIN_RETENTION_SECONDS,
    Chain,
    apply_task_event,
    chain_key,
    orphan_triggers,
    runtime_trigger,
)
from flowguard.engine.workers import (
    DEFAULT_EXPIRY_FACTOR,
    DEFAULT_OFFLINE_GRACE_SECONDS,
    WorkerState,
    apply_worker_event,
    expire_worker,
    orphans_now,
    worker_key,
)
from topics.commands import RetryCommand
from topics.events import Event, TaskEvent, WorkerEvent
from topics.execution import ConditionResult, ExecutionRecord
from topics.triggers import Trigger


@dataclass(frozen=True, slots=True)
class EngineConfig:
    dry_run: bool = True
    heartbeat_expiry_factor: float = DEFAULT_EXPIRY_FACTOR
    explain: bool = False
    chain_retention_seconds: float = CHAIN_RETENTION_SECONDS
    offline_grace_seconds: float = DEFAULT_OFFLINE_GRACE_SECONDS


@dataclass(frozen=True, slots=True)
class Explanation:
    trigger: Trigger
    workflow_id: str
    reason: str


@dataclass(slots=True)
class Output:
    """What one step produced, in the order it was decided."""

    records: list[ExecutionRecord] = field(default_factory=list)
    commands: list[RetryCommand] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    explanations: list[Explanation] = field(default_factory=list)

    def clear(self) -> None:
        for items in (self.records, self.commands, self.notices, self.triggers, self.explanations):
            items.clear()


# Timer kinds, in the order they fire when due at the same instant.
_WORKER, _ORPHANS, _RUNTIME, _RETRY, _FORGET = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class _RuntimeCheck:
    chain_key: str
    task_id: str
    threshold: float


@dataclass(frozen=True, slots=True)
class _Forget:
    chain_key: str


@dataclass(frozen=True, slots=True)
class _Orphans:
    worker_key: str


# A timer's payload: a worker key (heartbeat expiry), a worker whose goodbye's grace ends,
# a run-time check, a delayed retry, or a chain whose tasks are all final, to forget once
# its retention has passed.
_Payload = str | _Orphans | _RuntimeCheck | PendingRetry | _Forget


class Engine:
    """All state in memory. Feed events in arrival order; collect what each step decided."""

    def __init__(self, workflows: Iterable[Published], config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.index = WorkflowIndex(workflows)
        self._thresholds = self.index.thresholds()
        self.chains: dict[str, Chain] = {}
        self.workers: dict[str, WorkerState] = {}
        self.breakers: dict[str, BreakerState] = {}
        self.retries: dict[str, int] = {}
        self._roots: dict[tuple[str, str], Chain] = {}
        # Chains with a delayed retry pending: kept until it comes due, to check recovery.
        self._pinned: Counter[str] = Counter()
        self._timers: list[tuple[float, int, int, _Payload]] = []
        self._seq = itertools.count()
        self.clock = float("-inf")

    def feed(self, event: Event, out: Output | None = None) -> Output:
        """Advance the clock to the event, fire what came due before it, then apply it.

        Appends to ``out`` when given (a caller-owned buffer: replay drains one per event
        rather than allocating one per event), else to a new :class:`Output`.
        """
        if out is None:
            out = Output()
        if event.timestamp > self.clock:
            self._advance(event.timestamp, out)
        kind = event.kind
        if kind.startswith("task."):
            self._on_task(event, out)  # type: ignore[arg-type]
        elif kind.startswith("worker."):
            self._on_worker(event, out)  # type: ignore[arg-type]
        return out

    # detection ------------------------------------------------------------------

    def _on_task(self, event: TaskEvent, out: Output) -> None:
        chain = self._chain_for(event)
        task = chain.tasks.get(event.task_id)
        starts = task.starts if task is not None else 0
        trigger = apply_task_event(chain, event)
        task = chain.tasks[event.task_id]
        if task.starts != starts and task.started_at is not None:
            key = chain_key(chain.cluster, chain.root_id)
            for threshold in self._thresholds:
                check = _RuntimeCheck(key, task.task_id, threshold)
                self._timer(task.started_at + threshold, _RUNTIME, check)
            if task.worker is not None:
                self._orphan_if_offline(chain, task.worker, out)
        if trigger is not None:
            self._handle(trigger, out)
        key = chain_key(chain.cluster, chain.root_id)
        if key in self._pinned:
            return
        if chain.settled():
            self._forget(chain)
        elif (at := chain.forget_at(self.config.chain_retention_seconds)) is not None:
            self._timer(at, _FORGET, _Forget(key))

    def _forget(self, chain: Chain) -> None:
        """Drop a chain no rule can need again: settled (or final and quiet for its retention),
        nothing running, no retry pending."""
        del self.chains[chain_key(chain.cluster, chain.root_id)]
        for task_id in chain.tasks:
            self._roots.pop((chain.cluster, task_id), None)

    def _chain_for(self, event: TaskEvent) -> Chain:
        """The task's chain: by its root id, or where the task was seen before without one."""
        cluster, task_id = event.cluster, event.task_id
        known = self._roots.get((cluster, task_id))
        if known is not None and (event.root_id is None or event.root_id == known.root_id):
            return known
        root = event.root_id or task_id
        key = chain_key(cluster, root)
        chain = self.chains.get(key)
        if chain is None:
            chain = self.chains[key] = Chain(cluster=cluster, root_id=root)
        if known is not None:
            self._move(known, chain, task_id)
        self._roots[(cluster, task_id)] = chain
        return chain

    def _move(self, old: Chain, chain: Chain, task_id: str) -> None:
        """A task first seen without its root id (started before received) joins its chain."""
        task = old.tasks.pop(task_id, None)
        if task is None:
            return
        old.failures -= task.failures
        if not old.tasks:
            self.chains.pop(chain_key(old.cluster, old.root_id), None)
        task.root_id = chain.root_id
        chain.tasks[task_id] = task
        chain.failures += task.failures

    def _on_worker(self, event: WorkerEvent, out: Output) -> None:
        key = worker_key(event.cluster, event.hostname)
        worker = self.workers.get(key)
        if worker is None:
            worker = self.workers[key] = WorkerState(cluster=event.cluster, hostname=event.hostname)
        trigger = apply_worker_event(worker, event, self.config.offline_grace_seconds)
        if worker.online:
            self._timer(worker.expires_at(self.config.heartbeat_expiry_factor), _WORKER, key)
        if trigger is not None:
            self._went_offline(worker, trigger, out)

    def _went_offline(self, worker: WorkerState, trigger: Trigger, out: Output) -> None:
        self._handle(trigger, out)
        self._orphans(worker, trigger.at, trigger.reason, out)
        if worker.orphans_due is not None:  # a goodbye: its tasks may still finish
            key = worker_key(worker.cluster, worker.hostname)
            self._timer(worker.orphans_due, _ORPHANS, _Orphans(key))

    def _orphans(self, worker: WorkerState, now: float, why: str, out: Output) -> None:
        """``task.orphaned`` for what the worker still ran when it went offline, once due."""
        offline_at = orphans_now(worker, now)
        if offline_at is None:
            return
        for key in sorted(self.chains):
            chain = self.chains[key]
            if chain.cluster == worker.cluster:
                for orphan in orphan_triggers(
                    chain, worker.hostname, at=now, why=why, started_before=offline_at
                ):
                    self._handle(orphan, out)

    def _orphan_if_offline(self, chain: Chain, hostname: str, out: Output) -> None:
        """A start reported by a worker already judged offline (its events arrived late); within
        a goodbye's grace the timer judges it."""
        worker = self.workers.get(worker_key(chain.cluster, hostname))
        if worker is None or worker.online or worker.offline_at is None:
            return
        if worker.orphans_due is None:
            for orphan in orphan_triggers(
                chain, hostname, at=self.clock, why="already offline",
                started_before=worker.offline_at,
            ):  # fmt: skip
                self._handle(orphan, out)

    # timers ---------------------------------------------------------------------

    def _timer(self, due: float, kind: int, payload: _Payload) -> None:
        heapq.heappush(self._timers, (due, kind, next(self._seq), payload))

    def _advance(self, now: float, out: Output) -> None:
        while self._timers and self._timers[0][0] <= now:
            due, _, _, payload = heapq.heappop(self._timers)
            self.clock = max(self.clock, due)
            if isinstance(payload, str):
                self._expire(payload, due, out)
            elif isinstance(payload, _Orphans):
                grace = self.config.offline_grace_seconds
                why = f"worker-offline event; still running {grace:g}s later"
                self._orphans(self.workers[payload.worker_key], due, why, out)
            elif isinstance(payload, _RuntimeCheck):
                self._runtime(payload, due, out)
            elif isinstance(payload, _Forget):
                self._forget_if_quiet(payload.chain_key, due)
            else:
                self._due(payload, out)
        self.clock = max(self.clock, now)

    def _expire(self, key: str, due: float, out: Output) -> None:
        worker = self.workers[key]
        trigger = expire_worker(worker, now=due, factor=self.config.heartbeat_expiry_factor)
        if trigger is not None:
            self._went_offline(worker, trigger, out)

    def _forget_if_quiet(self, key: str, due: float) -> None:
        chain = self.chains.get(key)
        if chain is None or key in self._pinned:
            return
        at = chain.forget_at(self.config.chain_retention_seconds)
        if at is not None and at <= due:  # no event moved it since the timer was set
            self._forget(chain)

    def _runtime(self, check: _RuntimeCheck, due: float, out: Output) -> None:
        chain = self.chains.get(check.chain_key)
        trigger = runtime_trigger(chain, check.task_id, check.threshold, now=due) if chain else None
        if trigger is not None:
            self._handle(trigger, out)

    def _due(self, pending: PendingRetry, out: Output) -> None:
        self._pinned[pending.chain_key] -= 1
        if self._pinned[pending.chain_key] <= 0:
            del self._pinned[pending.chain_key]
        chain = self.chains.get(pending.chain_key)
        task_id = pending.command.original_task_id
        recovered = chain.recovered_since(task_id, pending.since) if chain else None
        record, command = resolve(pending, recovered, dry_run=self.config.dry_run)
        out.records.append(record)
        if command is not None:
            out.commands.append(command)

    # matching and deciding ------------------------------------------------------

    def _handle(self, trigger: Trigger, out: Output) -> None:
        out.triggers.append(trigger)
        if self.config.explain:
            out.explanations.extend(
                Explanation(trigger, item.workflow.id, why)
                for item, why in self.index.explain(trigger)
            )
        for published, conditions in self.index.match(trigger):
            self._decide(published, trigger, conditions, out)

    def _decide(
        self,
        published: Published,
        trigger: Trigger,
        conditions: list[ConditionResult],
        out: Output,
    ) -> None:
        wf_id = published.workflow.id
        budget_key = f"{wf_id}|{trigger.cluster}/{trigger.task.root_id}" if trigger.task else wf_id
        decision = decide(
            published,
            trigger,
            conditions,
            breaker=self.breakers.get(wf_id, BreakerState()),
            retries_made=self.retries.get(budget_key, 0),
            dry_run=self.config.dry_run,
        )
        self.breakers[wf_id] = decision.breaker
        self.retries[budget_key] = decision.retries_made
        out.records.append(decision.record)
        out.commands.extend(decision.commands)
        out.notices.extend(decision.notices)
        for pending in decision.pending:
            self._pinned[pending.chain_key] += 1
            self._timer(pending.due_at, _RETRY, pending)
