"""Which workflows a trigger concerns: an index by trigger event and literal task name.

With thousands of workflows most name one task exactly; indexing those by name
keeps matching a dictionary lookup plus the few wildcard workflows, rather
than a scan of them all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowguard.engine.conditions import CompiledConditions, compile_conditions, is_literal_glob
from flowguard.engine.workflow import Workflow
from topics.execution import ConditionResult
from topics.triggers import STUCK_STAGES, StuckStage, Trigger


@dataclass(frozen=True, slots=True)
class Published:
    """A workflow at one version, with its conditions compiled."""

    workflow: Workflow
    version: int
    conditions: CompiledConditions

    @classmethod
    def of(cls, workflow: Workflow, version: int = 0) -> Published:
        return cls(workflow, version, compile_conditions(workflow.trigger.conditions))


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The distinct thresholds of enabled absence workflows, ascending: how long a task may
    run (``task.execution_time_exceeded``), stay sent, or stay received (``task.stuck``)."""

    runtime: tuple[float, ...] = ()
    unreceived: tuple[float, ...] = ()
    unstarted: tuple[float, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.runtime or self.unreceived or self.unstarted)

    def stage(self, stage: StuckStage) -> tuple[float, ...]:
        return self.unreceived if stage == "unreceived" else self.unstarted


def _thresholds(items: list[Published]) -> Thresholds:
    found: dict[str, set[float]] = {"runtime": set(), "unreceived": set(), "unstarted": set()}
    for item in items:
        trigger = item.workflow.trigger
        seconds = trigger.threshold_seconds or 0.0
        if trigger.event == "task.execution_time_exceeded":
            found["runtime"].add(seconds)
        elif trigger.event == "task.stuck":
            for stage in (trigger.stage,) if trigger.stage else STUCK_STAGES:
                found[stage].add(seconds)
    return Thresholds(**{k: tuple(sorted(v)) for k, v in found.items()})


@dataclass(slots=True)
class _Bucket:
    by_name: dict[str, list[Published]] = field(default_factory=lambda: defaultdict(list))
    other: list[Published] = field(default_factory=list)


class WorkflowIndex:
    """The enabled workflows, found by trigger; all of them (enabled or not) for explanations."""

    def __init__(self, published: Iterable[Published]) -> None:
        self.all = sorted(published, key=lambda p: p.workflow.id)
        self._buckets: dict[str, _Bucket] = defaultdict(_Bucket)
        for item in self.all:
            if not item.workflow.enabled:
                continue
            bucket = self._buckets[item.workflow.trigger.event]
            pattern = item.workflow.trigger.conditions.task_name_pattern
            if pattern is not None and is_literal_glob(pattern):
                bucket.by_name[pattern].append(item)
            else:
                bucket.other.append(item)
        self._thresholds = _thresholds([p for p in self.all if p.workflow.enabled])

    def candidates(self, trigger: Trigger) -> list[Published]:
        """Enabled workflows for this trigger that may match, ordered by workflow id."""
        bucket = self._buckets.get(trigger.event)
        if bucket is None:
            return []
        name = trigger.task.name if trigger.task is not None else None
        named = bucket.by_name.get(name, []) if name is not None else []
        if not named:
            return bucket.other
        if not bucket.other:
            return named
        return sorted([*named, *bucket.other], key=lambda p: p.workflow.id)

    def match(self, trigger: Trigger) -> list[tuple[Published, list[ConditionResult]]]:
        """The workflows whose trigger and conditions all match, with every condition's result."""
        matched = []
        for item in self.candidates(trigger):
            wanted = item.workflow.trigger
            if wanted.threshold_seconds is not None and (
                wanted.threshold_seconds != trigger.threshold_seconds
            ):
                continue
            if wanted.stage is not None and wanted.stage != trigger.stage:
                continue
            if item.conditions.first_failure(trigger) is None:
                matched.append((item, item.conditions.evaluate(trigger)[0]))
        return matched

    def thresholds(self) -> Thresholds:
        """The deadlines enabled workflows need watched (computed once per index)."""
        return self._thresholds

    def explain(self, trigger: Trigger) -> list[tuple[Published, str]]:
        """Why each workflow for this trigger's event did not fire (those that did are left out)."""
        reasons = []
        for item in self.all:
            wf = item.workflow
            if wf.trigger.event != trigger.event:
                continue
            if not wf.enabled:
                reasons.append((item, "disabled"))
                continue
            if wf.trigger.threshold_seconds not in (None, trigger.threshold_seconds):
                reasons.append((item, f"threshold is {wf.trigger.threshold_seconds:g}s"))
                continue
            if wf.trigger.stage not in (None, trigger.stage):
                reasons.append((item, f"stage is {wf.trigger.stage}"))
                continue
            failed = item.conditions.first_failure(trigger)
            if failed is not None:
                reasons.append((item, f"condition {failed[0]}={failed[1]!r} did not match"))
        return reasons
