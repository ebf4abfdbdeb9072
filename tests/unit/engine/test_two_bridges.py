"""Two bridges on one cluster: every event published twice decides what one copy decides.

A bridge that restarts misses what Celery broadcast meanwhile (on Redis, events are pub/sub:
nobody keeps them; docs/reliability.md's bridge trials lost exactly those). Two bridges per
cluster close that gap only if the engine takes the second copy of each event for the same
event wherever it lands: each bridge publishes in Celery's order, but the two copies
interleave (one bridge a few events behind the other, or far behind after a restart). This
replays each recorded real stream against two interleaved copies of itself and asks for the
same records as from one copy. On the code before ``TaskState.failure_stamps``,
``celery_retry`` counted a task-retried seen again after a later failure as a new failure.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from flowguard.replay import ReplayStats, replay
from tests.unit.test_replay_recorded import ANY_FAILURE, STREAMS, TEMPLATES, WORKERS_DOWN

STUCK = {
    "name": "stuck in the queue",
    "trigger": {"event": "task.stuck", "stage": "unstarted", "threshold_seconds": 1},
    "action": {"type": "webhook", "url": "https://ops.example.com/stuck"},
}
TWICE = {
    "name": "started twice",
    "trigger": {"event": "task.duplicate_start"},
    "action": {"type": "webhook", "url": "https://ops.example.com/twice"},
}
WORKFLOWS = [
    Published.of(w if not isinstance(w, dict) else parse_workflow(w, source="test"), version=1)
    for w in [*TEMPLATES.values(), WORKERS_DOWN, ANY_FAILURE, STUCK, TWICE]
]
NAMES = sorted(p.stem for p in STREAMS.glob("*.jsonl"))

Decided = list[tuple[str, int, str, tuple[tuple[str, str], ...]]]


def decide(lines: list[bytes]) -> Decided:
    stats = ReplayStats()
    records = list(replay(WORKFLOWS, iter(lines), stats=stats))
    assert stats.malformed == 0
    return sorted(
        (r.execution_id, r.seq, r.outcome, tuple((a.action_id, a.status) for a in r.actions))
        for r in records
    )


@cache
def lines_of(name: str) -> tuple[bytes, ...]:
    return tuple((STREAMS / f"{name}.jsonl").read_bytes().splitlines(keepends=True))


@cache
def one_copy(name: str) -> Decided:
    return decide(list(lines_of(name)))


def interleave(lines: tuple[bytes, ...], picks: list[bool], lag: int) -> list[bytes]:
    """Both copies in order; ``picks`` says which goes next (True: the first), the second at
    most ``lag`` events behind the first and never ahead of it."""
    out: list[bytes] = []
    first = second = 0
    choices = iter(picks)
    while first < len(lines) or second < len(lines):
        take_first = first < len(lines) and (
            second >= first or (first - second < lag and next(choices, True))
        )
        if take_first:
            out.append(lines[first])
            first += 1
        else:
            out.append(lines[second])
            second += 1
    return out


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(picks=st.lists(st.booleans(), max_size=400), lag=st.sampled_from([1, 3, 10, 40, 10_000]))
def test_two_interleaved_copies_decide_what_one_decides(
    name: str, picks: list[bool], lag: int
) -> None:
    assert one_copy(name), f"{name}: the workflows decide nothing on one copy"
    assert decide(interleave(lines_of(name), picks, lag)) == one_copy(name)
