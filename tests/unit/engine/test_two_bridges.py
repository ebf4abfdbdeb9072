"""Two bridges on one cluster: every event published twice decides what one copy decides.

A bridge that restarts misses what Celery broadcast meanwhile (on Redis, events are pub/sub:
nobody keeps them; docs/reliability.md's bridge trials lost exactly those). Two bridges per
cluster close that gap only if the engine takes the second copy of each event for the same
event wherever it lands: each bridge publishes in Celery's order, but the two copies
interleave (one bridge a few events behind the other, or far behind after a restart). This
replays each recorded real stream against two interleaved copies of itself, the second up
to 0.9 s behind (below the workflows' smallest ``task.stuck`` threshold), and asks for the
same records as from one copy; without ``task.stuck`` workflows, the second copy up to the
whole stream behind. On the code before ``TaskState.failure_stamps``, ``celery_retry``
counted a task-retried seen again after a later failure as a new failure.
"""

from __future__ import annotations

import json
import random
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
UNTIMED = [
    Published.of(w if not isinstance(w, dict) else parse_workflow(w, source="test"), version=1)
    for w in [*TEMPLATES.values(), WORKERS_DOWN, ANY_FAILURE, TWICE]
]
#: With ``task.stuck``, which a copy later than its threshold can fire for a finished task.
WORKFLOWS = [*UNTIMED, Published.of(parse_workflow(STUCK, source="test"), version=1)]
NAMES = sorted(p.stem for p in STREAMS.glob("*.jsonl"))

Decided = list[tuple[str, int, str, tuple[tuple[str, str], ...]]]


def decide(lines: list[bytes], workflows: list[Published] = WORKFLOWS) -> Decided:
    stats = ReplayStats()
    records = list(replay(workflows, iter(lines), stats=stats))
    assert stats.malformed == 0
    return sorted(
        (r.execution_id, r.seq, r.outcome, tuple((a.action_id, a.status) for a in r.actions))
        for r in records
    )


@cache
def lines_of(name: str) -> tuple[bytes, ...]:
    return tuple((STREAMS / f"{name}.jsonl").read_bytes().splitlines(keepends=True))


def one_copy(name: str) -> Decided:
    return decide(list(lines_of(name)))


def interleave(lines: tuple[bytes, ...], picks: list[bool], lag_seconds: float) -> list[bytes]:
    """Both copies in order; ``picks`` says which goes next (True: the first), the second
    never ahead of the first and at most ``lag_seconds`` of Celery's timestamps behind it."""
    stamps = [float(json.loads(line)["timestamp"]) for line in lines]
    out: list[bytes] = []
    first = second = 0
    choices = iter(picks)
    while first < len(lines) or second < len(lines):
        behind = first < len(lines) and stamps[first] - stamps[second] > lag_seconds
        take_first = first < len(lines) and (
            second >= first or (not behind and next(choices, True))
        )
        if take_first:
            out.append(lines[first])
            first += 1
        else:
            out.append(lines[second])
            second += 1
    return out


#: (workflows, the second copy's lags in seconds): with task.stuck, lags below its 1 s
#: threshold; without it, up to the whole stream.
CASES = {
    "with task.stuck": (WORKFLOWS, [0.0, 0.05, 0.3, 0.9]),
    "without task.stuck": (UNTIMED, [1.0, 5.0, 60.0, 1e9]),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20, deadline=None)
@given(picks=st.lists(st.booleans(), max_size=400), data=st.data())
def test_two_interleaved_copies_decide_what_one_decides(
    name: str, case: str, picks: list[bool], data: st.DataObject
) -> None:
    workflows, lags = CASES[case]
    lag = data.draw(st.sampled_from(lags), label="lag")
    lines = lines_of(name)
    one = decide(list(lines), workflows)
    assert one, f"{name}: the workflows decide nothing on one copy"
    assert decide(interleave(lines, picks, lag), workflows) == one


def test_a_copy_later_than_a_stuck_threshold_brings_back_a_finished_task() -> None:
    """The limit docs/bridge.md states: a finished task is forgotten at once, so a copy of
    its events later than a task.stuck threshold (1 s here; this copy is up to 5 s late)
    starts it again, and task.stuck can fire for it."""
    rng = random.Random(3)  # an interleaving found to show it
    picks = [rng.random() < 0.7 for _ in range(100)]
    late = decide(interleave(lines_of("stuck_prefetched"), picks, 5.0))
    extra = [d for d in late if d not in one_copy("stuck_prefetched")]
    assert extra, "a 10 s late copy changed nothing: the limit in docs/bridge.md is gone"
