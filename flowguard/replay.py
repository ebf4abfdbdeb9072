"""Replay: run workflows over recorded events, deciding but never acting.

The same :class:`~flowguard.engine.core.Engine` the Test Workflow button uses;
every action is ``planned`` and every record ``dry_run``. Malformed lines are
reported with their line number and skipped; the run goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from flowguard.celery_wire.events import parse_line
from flowguard.engine.core import Engine, EngineConfig, Explanation, Output
from flowguard.engine.matching import Published
from flowguard.errors import EventInvalid
from topics.execution import ExecutionRecord


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    events: int = 0
    ignored: int = 0
    malformed: int = 0
    triggers: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none"
        return (
            f"replay: {self.lines} lines, {self.events} events, {self.ignored} ignored, "
            f"{self.malformed} malformed; {self.triggers} triggers; executions: {outcomes}"
        )


def replay(
    workflows: Iterable[Published],
    lines: Iterable[bytes],
    *,
    cluster: str = "default",
    stats: ReplayStats | None = None,
    on_malformed: Callable[[int, str], None] | None = None,
    on_explanation: Callable[[Explanation], None] | None = None,
) -> Iterator[ExecutionRecord]:
    """Yield execution records in decision order, deterministically."""
    stats = stats if stats is not None else ReplayStats()
    engine = Engine(workflows, EngineConfig(dry_run=True, explain=on_explanation is not None))
    out = Output()
    for number, line in enumerate(lines, start=1):
        if line.isspace() or not line:
            continue
        stats.lines += 1
        try:
            event = parse_line(orjson.loads(line), cluster)
        except (orjson.JSONDecodeError, EventInvalid) as exc:
            stats.malformed += 1
            if on_malformed is not None:
                on_malformed(number, _reason(exc))
            continue
        if event is None:
            stats.ignored += 1
            continue
        stats.events += 1
        engine.feed(event, out)
        if not out.triggers and not out.records:
            continue
        stats.triggers += len(out.triggers)
        if on_explanation is not None:
            for explanation in out.explanations:
                on_explanation(explanation)
        records = list(out.records)
        out.clear()
        for record in records:
            stats.outcomes[record.outcome] += 1
            yield record


def _reason(exc: Exception) -> str:
    if isinstance(exc, EventInvalid):
        return exc.reason
    return f"not valid JSON: {exc}"
