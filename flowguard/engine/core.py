"""The decision core driven in one process: what ``replay`` and Test Workflow run.

The rules are in :mod:`flowguard.engine.detect` (per retry chain and per worker) and
:mod:`flowguard.engine.executions` (per workflow); ``flowguard worker`` runs the very same
functions over Faust tables and Kafka topics. This driver keeps their state in dicts, keys
events as the bridge does (:func:`topics.keys.record_key`), hands each stage's output to the
next by a call instead of a topic, and keeps time in event time: the clock is the latest event
timestamp seen (it never goes back), and every key's deadlines that the clock passes are
ticked, at their due time, before the event that passed them. So a replay of the same events
decides the same way, byte for byte.

Where the live app differs by nature (what it delivers, when the wall clock ticks, what a
dry run shows), ``docs/worker.md`` lists it; ``tests/e2e/test_live_equals_replay.py`` keeps
the rest identical.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowguard.engine import detect, executions
from flowguard.engine.decision import Notice
from flowguard.engine.matching import Published, WorkflowIndex
from flowguard.engine.tasks import CHAIN_RETENTION_SECONDS
from flowguard.engine.workers import DEFAULT_EXPIRY_FACTOR, DEFAULT_OFFLINE_GRACE_SECONDS
from topics.commands import RetryCommand
from topics.events import Event, TaskEvent, WorkerEvent
from topics.execution import ExecutionRecord
from topics.keys import RootMemory, record_key
from topics.scheduled import ScheduledRetry, WorkerGone
from topics.triggers import ActionOutcome, Trigger

#: The one "partition" of an in-memory run (the live app keeps a mark per partition).
_PARTITION = 0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    dry_run: bool = True
    heartbeat_expiry_factor: float = DEFAULT_EXPIRY_FACTOR
    explain: bool = False
    chain_retention_seconds: float = CHAIN_RETENTION_SECONDS
    offline_grace_seconds: float = DEFAULT_OFFLINE_GRACE_SECONDS
    stranded_after_seconds: float = detect.STRANDED_AFTER_SECONDS

    def timing(self) -> detect.Timing:
        return detect.Timing(
            heartbeat_expiry_factor=self.heartbeat_expiry_factor,
            offline_grace_seconds=self.offline_grace_seconds,
            chain_retention_seconds=self.chain_retention_seconds,
            stranded_after_seconds=self.stranded_after_seconds,
            watch_retries=not self.dry_run,
        )


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


_DRY_STATUSES = frozenset({"scheduled", "sent"})


def dry_run_view(record: ExecutionRecord) -> ExecutionRecord:
    """A record as a dry run shows it: nothing was sent, so what the live app would have
    scheduled or sent is ``planned``."""
    actions = record.actions
    if any(a.status in _DRY_STATUSES for a in actions):
        actions = tuple(
            a.model_copy(update={"status": "planned"}) if a.status in _DRY_STATUSES else a
            for a in actions
        )
    return record.model_copy(update={"dry_run": True, "actions": actions})


class Engine:
    """All state in memory. Feed events in arrival order; collect what each step decided."""

    def __init__(self, workflows: Iterable[Published], config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.timing = self.config.timing()
        published = list(workflows)
        self.index = WorkflowIndex(published)
        self._published = {p.workflow.id: p for p in published}
        self.chains: dict[str, detect.ChainSlot] = {}
        self.workers: dict[str, detect.WorkerSlot] = {}
        self.gone: dict[str, detect.GoneSlot] = {}
        self.workflow_state: dict[str, executions.WorkflowSlot] = {}
        self.executions: dict[str, executions.Entry] = {}
        self.roots = RootMemory()
        # (due, order, key): a key's deadline; stale ones tick and find nothing due.
        self._deadlines: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._offset = 0
        self.clock = float("-inf")

    def feed(self, event: Event, out: Output | None = None) -> Output:
        """Advance the clock to the event, tick what came due before it, then apply it.

        Appends to ``out`` when given (a caller-owned buffer: replay drains one per event
        rather than allocating one per event), else to a new :class:`Output`.
        """
        if out is None:
            out = Output()
        if event.timestamp > self.clock:
            self.advance(event.timestamp, out)
        kind = event.kind
        if kind.startswith("task."):
            self._on_task(event, out)  # type: ignore[arg-type]
        elif kind.startswith("worker."):
            self._on_worker(event, out)  # type: ignore[arg-type]
        return out

    def advance(self, now: float, out: Output) -> None:
        """Tick every key whose deadline is at or before ``now``, each at its due time."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            due, _, key = heapq.heappop(deadlines)
            self.clock = max(self.clock, due)
            self._tick(key, due, out)
        self.clock = max(self.clock, now)

    # detection --------------------------------------------------------------------

    def _on_task(self, event: TaskEvent, out: Output) -> None:
        key = record_key(event, self.roots)
        self._offset += 1
        slot, found = detect.on_task_event(
            self.chains.get(key), key, event, self._offset, self.index, self._is_offline,
            self.timing,
        )  # fmt: skip
        self._keep_chain(key, slot)
        if found.matched or found.deadlines or found.triggers or found.outcomes:
            self._detected(key, found, out)

    def _is_offline(self, cluster: str, hostname: str, at: float) -> bool:
        return detect.offline_by(self.gone.get(detect.gone_key(_PARTITION, cluster, hostname)), at)

    def _on_worker(self, event: WorkerEvent, out: Output) -> None:
        key = record_key(event, self.roots)
        self._offset += 1
        slot, found = detect.on_worker_event(
            self.workers.get(key), event, self._offset, self.index, self.timing
        )
        self.workers[key] = slot
        self._detected(key, found, out)

    def _tick(self, key: str, now: float, out: Output) -> None:
        if key in self.workers:
            wslot, found = detect.on_worker_tick(self.workers[key], self.index, now, self.timing)
            if wslot is not None:
                self.workers[key] = wslot
        else:
            slot, found = detect.on_chain_tick(self.chains.get(key), self.index, now, self.timing)
            self._keep_chain(key, slot)
        self._detected(key, found, out)

    def _keep_chain(self, key: str, slot: detect.ChainSlot | None) -> None:
        if slot is None:
            self.chains.pop(key, None)
        else:
            self.chains[key] = slot

    def _gone(self, gone: WorkerGone, out: Output) -> None:
        """A worker gone offline, as every partition hears it: its chains' orphans."""
        changed, found = detect.on_worker_gone(self.chains, gone, self.index)
        self.chains.update(changed)
        mark = detect.gone_key(_PARTITION, gone.cluster, gone.hostname)
        self.gone[mark] = detect.GoneSlot.of(gone)
        self._detected(f"{gone.cluster}/{gone.hostname}", found, out)

    def _detected(self, key: str, found: detect.Out, out: Output) -> None:
        """Hand one detection step's output on, as the live app's topics would."""
        for due in found.deadlines:
            heapq.heappush(self._deadlines, (due, next(self._order), key))
        for trigger in found.triggers:
            out.triggers.append(trigger)
            if self.config.explain:
                out.explanations.extend(
                    Explanation(trigger, item.workflow.id, why)
                    for item, why in self.index.explain(trigger)
                )
        for matched in found.matched:
            self._decided(
                *executions.on_matched(
                    self.workflow_state.get(matched.workflow_id),
                    self.executions.get,
                    matched,
                    self._published.get(matched.workflow_id),
                ),
                workflow_id=matched.workflow_id,
                out=out,
            )
        for gone in found.gone:
            self._gone(gone, out)
        out.commands.extend(found.commands)
        for outcome in found.outcomes:
            self._outcome(outcome, out)

    # deciding ---------------------------------------------------------------------

    def _decided(
        self,
        slot: executions.WorkflowSlot | None,
        decided: executions.Out,
        *,
        workflow_id: str,
        out: Output,
    ) -> None:
        if slot is not None:
            self.workflow_state[workflow_id] = slot
        self.executions.update(decided.writes)
        records = decided.records
        if self.config.dry_run:
            records = [dry_run_view(record) for record in records]
        out.records.extend(records)
        out.commands.extend(decided.commands)
        out.notices.extend(decided.notices)
        for scheduled in decided.scheduled:
            self._hold(scheduled)
        if self.timing.watch_retries:
            for sent in decided.sent:
                slot_, found = detect.on_retry_sent(
                    self.chains.get(sent.chain_key), sent, self.timing
                )
                self._keep_chain(sent.chain_key, slot_)
                self._detected(sent.chain_key, found, out)
        for cancel in decided.cancels:
            self._keep_chain(
                cancel.chain_key, detect.on_cancel(self.chains.get(cancel.chain_key), cancel)
            )

    def _hold(self, scheduled: ScheduledRetry) -> None:
        slot, found = detect.on_scheduled(
            self.chains.get(scheduled.chain_key), scheduled, scheduled.command.cluster
        )
        self.chains[scheduled.chain_key] = slot
        for due in found.deadlines:
            heapq.heappush(self._deadlines, (due, next(self._order), scheduled.chain_key))

    def _outcome(self, outcome: ActionOutcome, out: Output) -> None:
        entry, decided = executions.on_outcome(self.executions.get(outcome.execution_id), outcome)
        if entry is not None:
            self.executions[outcome.execution_id] = entry
        self._decided(None, decided, workflow_id=outcome.workflow_id, out=out)
