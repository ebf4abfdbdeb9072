"""Test Workflow: one workflow through :func:`flowguard.replay.replay`, as a dry run.

The records are exactly what ``flowguard replay`` prints for the same workflow and
events (the same function makes them). Per trigger of the workflow's event, the
answer says whether it fired and, if not, why (the engine's explanation).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from flowguard.engine.core import Explanation
from flowguard.engine.matching import Published
from flowguard.replay import ReplayStats, replay
from topics.execution import ExecutionRecord
from topics.record import iso

MAX_VERDICTS = 1000
MAX_MALFORMED = 100


class Verdict(BaseModel):
    """One trigger of the workflow's event: fired (with its executions) or why not."""

    trigger_id: str
    event: str
    at: str
    subject: str
    fired: bool
    reason: str = ""
    execution_ids: list[str] = []


class Malformed(BaseModel):
    line: int
    reason: str


class RunStats(BaseModel):
    lines: int
    events: int
    ignored: int
    malformed: int
    triggers: int
    outcomes: dict[str, int]


class TestRun(BaseModel):
    """What the workflow would have done: records as the log would hold them, and verdicts."""

    __test__ = False  # not a pytest class

    records: list[ExecutionRecord]
    verdicts: list[Verdict]
    verdicts_truncated: bool = False
    malformed: list[Malformed] = []
    stats: RunStats


def _subject_of_record(record: ExecutionRecord) -> str:
    if record.task is not None:
        return record.task.name or record.task.id
    return record.worker.hostname if record.worker else ""


def _subject_of_explanation(item: Explanation) -> str:
    task = item.trigger.task
    if task is not None:
        return task.name or task.id
    return item.trigger.worker or ""


def run_test(published: Published, lines: Iterable[bytes], *, cluster: str) -> TestRun:
    """Replay ``lines`` (JSONL of raw Celery or flowguard events) through one workflow."""
    verdicts: dict[str, Verdict] = {}
    malformed: list[Malformed] = []
    stats = ReplayStats()

    def explained(item: Explanation) -> None:
        if item.workflow_id == published.workflow.id and item.trigger.trigger_id not in verdicts:
            verdicts[item.trigger.trigger_id] = Verdict(
                trigger_id=item.trigger.trigger_id,
                event=item.trigger.event,
                at=iso(item.trigger.at) or "",
                subject=_subject_of_explanation(item),
                fired=False,
                reason=item.reason,
            )

    def bad_line(number: int, reason: str) -> None:
        if len(malformed) < MAX_MALFORMED:
            malformed.append(Malformed(line=number, reason=reason))

    records = list(
        replay(
            [published],
            lines,
            cluster=cluster,
            stats=stats,
            on_malformed=bad_line,
            on_explanation=explained,
        )
    )
    for record in records:
        verdict = verdicts.setdefault(
            record.trigger.id,
            Verdict(
                trigger_id=record.trigger.id,
                event=record.trigger.event,
                at=record.trigger.at,
                subject=_subject_of_record(record),
                fired=True,
            ),
        )
        if record.execution_id not in verdict.execution_ids:
            verdict.execution_ids.append(record.execution_id)
    ordered = sorted(verdicts.values(), key=lambda v: v.at)
    return TestRun(
        records=records,
        verdicts=ordered[:MAX_VERDICTS],
        verdicts_truncated=len(ordered) > MAX_VERDICTS,
        malformed=malformed,
        stats=RunStats(
            lines=stats.lines,
            events=stats.events,
            ignored=stats.ignored,
            malformed=stats.malformed,
            triggers=stats.triggers,
            outcomes=dict(stats.outcomes),
        ),
    )
