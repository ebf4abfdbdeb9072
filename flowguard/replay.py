"""Replay: run workflows over recorded events, deciding but never acting.

The same :class:`~flowguard.engine.core.Engine` the Test Workflow button uses;
every action is ``planned`` and every record ``dry_run``. Malformed lines are
reported with their line number and skipped; the run goes on.

:class:`Replayer` takes one line (or one Kafka record's value: the same JSON) at a
time; :func:`replay` drives it over the lines of a file, and ``flowguard replay
--from-kafka`` and ``flowguard rehearse`` over the records of ``<prefix>.events``.
One loop over the engine, whatever the events come from.
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

_NOTHING: tuple[ExecutionRecord, ...] = ()


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


class Replayer:
    """One engine fed one line at a time; what each line decided comes back in order."""

    def __init__(
        self,
        workflows: Iterable[Published],
        *,
        cluster: str = "default",
        stats: ReplayStats | None = None,
        on_explanation: Callable[[Explanation], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.stats = stats if stats is not None else ReplayStats()
        self._explain = on_explanation
        self._engine = Engine(
            workflows, EngineConfig(dry_run=True, explain=on_explanation is not None)
        )
        self._out = Output()

    def feed(self, line: bytes) -> tuple[ExecutionRecord, ...]:
        """The records this line decided (usually none). A line that is not an event is
        counted and raises :class:`EventInvalid` with the reason; the replayer goes on."""
        if not line or line.isspace():
            return _NOTHING
        stats = self.stats
        stats.lines += 1
        try:
            event = parse_line(orjson.loads(line), self.cluster)
        except (orjson.JSONDecodeError, EventInvalid) as exc:
            stats.malformed += 1
            raise EventInvalid(_reason(exc)) from None
        if event is None:
            stats.ignored += 1
            return _NOTHING
        stats.events += 1
        out = self._out
        self._engine.feed(event, out)
        if not out.triggers and not out.records:
            return _NOTHING
        stats.triggers += len(out.triggers)
        if self._explain is not None:
            for explanation in out.explanations:
                self._explain(explanation)
        records = tuple(out.records)
        out.clear()
        for record in records:
            stats.outcomes[record.outcome] += 1
        return records


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
    replayer = Replayer(workflows, cluster=cluster, stats=stats, on_explanation=on_explanation)
    for number, line in enumerate(lines, start=1):
        try:
            yield from replayer.feed(line)
        except EventInvalid as exc:
            if on_malformed is not None:
                on_malformed(number, exc.reason)


def _reason(exc: Exception) -> str:
    if isinstance(exc, EventInvalid):
        return exc.reason
    return f"not valid JSON: {exc}"
