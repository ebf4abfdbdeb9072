"""``task.stuck`` and ``task.duplicate_start`` over synthetic Celery streams.

The recorded streams (tests/unit/test_replay_recorded.py) show each on real events; these
pin the rules where they meet: a wait ending just at its threshold, a retry against a
second delivery, a stage a workflow does not watch.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.engine.documents import parse_workflow
from flowguard.errors import WorkflowInvalid
from tests import celery_events as ev
from tests.unit.engine.test_core import T0, engine, feed
from topics.record import iso

SLACK = {"type": "slack", "webhook_url": "https://hooks.example.com/x"}


def stuck(seconds: float, stage: str | None = None, **conditions: Any) -> dict[str, Any]:
    trigger: dict[str, Any] = {"event": "task.stuck", "threshold_seconds": seconds}
    if stage is not None:
        trigger["stage"] = stage
    if conditions:
        trigger["conditions"] = conditions
    return {"name": f"stuck {stage or 'any'} {seconds:g}", "trigger": trigger, "action": SLACK}


DUPLICATE = {"name": "duplicate", "trigger": {"event": "task.duplicate_start"}, "action": SLACK}


def beats(start: float, end: float) -> list[dict[str, Any]]:
    return [ev.heartbeat(T0 + k) for k in range(int(start), int(end))]


def test_a_task_nobody_receives_is_stuck_unreceived_once_stamped_at_its_threshold() -> None:
    eng = engine(stuck(10, "unreceived", queue="reports"))
    out = feed(eng, [ev.sent("t1", T0, "app.report", queue="reports"), *beats(1, 40)])
    (record,) = out.records
    assert record.trigger.event == "task.stuck"
    assert record.trigger.at == iso(T0 + 10)
    assert "no worker received it" in record.trigger.reason
    assert "'reports'" in record.trigger.reason
    assert record.task is not None
    assert record.task.queue == "reports"


def test_a_task_received_before_its_threshold_is_not_stuck() -> None:
    eng = engine(stuck(10, "unreceived"))
    out = feed(
        eng,
        [
            ev.sent("t1", T0, "app.report"),
            ev.received("t1", T0 + 9.9, "app.report"),
            ev.started("t1", T0 + 10),
            *beats(11, 30),
        ],
    )
    assert out.records == []


def test_received_and_not_started_is_stuck_unstarted_on_its_worker() -> None:
    eng = engine(stuck(5, "unstarted", worker_pattern="celery@w*"))
    out = feed(
        eng,
        [
            ev.sent("t1", T0, "app.report"),
            ev.received("t1", T0 + 1, "app.report"),
            *beats(2, 20),
            ev.started("t1", T0 + 20),
        ],
    )
    (record,) = out.records
    assert record.trigger.at == iso(T0 + 6)
    assert record.task is not None
    assert record.task.worker == "celery@w1"
    assert "not started" in record.trigger.reason


def test_a_stage_the_workflow_does_not_watch_does_not_fire_it() -> None:
    eng = engine(stuck(5, "unstarted"))
    out = feed(eng, [ev.sent("t1", T0, "app.report"), *beats(1, 30)])
    assert out.records == []


def test_without_a_stage_both_waits_fire_one_each() -> None:
    eng = engine(stuck(5))
    out = feed(
        eng,
        [
            ev.sent("t1", T0, "app.report"),
            *beats(1, 8),
            ev.received("t1", T0 + 8, "app.report"),
            *beats(9, 20),
        ],
    )
    stamps = [(r.trigger.at, r.trigger.reason.split()[0]) for r in out.records]
    assert stamps == [(iso(T0 + 5), "sent"), (iso(T0 + 13), "received")]


def test_an_eta_delays_the_unstarted_wait_until_the_eta() -> None:
    eng = engine(stuck(5, "unstarted"))
    received = {**ev.received("t1", T0, "app.report"), "eta": iso(T0 + 60)}
    out = feed(eng, [received, *beats(1, 64), ev.started("t1", T0 + 64)])
    assert out.records == [], "a countdown task waits for its ETA, it is not stuck"
    soon = {**ev.received("t2", T0 + 70, "app.report"), "eta": iso(T0 + 71)}
    late = feed(eng, [soon, *beats(72, 80)])
    (record,) = late.records
    assert record.trigger.at == iso(T0 + 76)


@settings(max_examples=60, deadline=None)
@given(
    threshold=st.integers(min_value=1, max_value=30),
    wait=st.floats(min_value=0, max_value=60, allow_nan=False).map(lambda x: round(x, 3)),
    stage=st.sampled_from(["unreceived", "unstarted"]),
)
def test_a_wait_fires_exactly_when_it_reaches_the_threshold(
    threshold: int, wait: float, stage: str
) -> None:
    """A task that moves on exactly at the threshold counts as stuck (``>=``, as run time
    does); just before, it does not. The next event after it moved on settles nothing more."""
    eng = engine(stuck(threshold, stage))
    if stage == "unreceived":
        stream = [ev.sent("t1", T0, "app.x"), ev.received("t1", T0 + wait, "app.x")]
    else:
        stream = [ev.received("t1", T0, "app.x"), ev.started("t1", T0 + wait)]
    out = feed(eng, [*stream, ev.heartbeat(T0 + 200)])
    fired = [r.trigger.at for r in out.records]
    assert fired == ([iso(T0 + threshold)] if wait >= threshold else [])


def test_workflow_fields_are_checked_with_the_field_and_the_reason() -> None:
    cases = [
        ({"event": "task.stuck"}, "threshold_seconds is required for task.stuck"),
        (
            {"event": "task.failed", "stage": "unstarted"},
            "stage only applies to task.stuck",
        ),
        (
            {"event": "task.stuck", "threshold_seconds": 5, "stage": "queued"},
            "trigger.stage",
        ),
        (
            {
                "event": "task.stuck",
                "threshold_seconds": 5,
                "stage": "unreceived",
                "conditions": {"worker_pattern": "w*"},
            },
            "worker_pattern does not apply",
        ),
        (
            {"event": "task.duplicate_start", "conditions": {"error_pattern": "x"}},
            "error_pattern does not apply to task.duplicate_start",
        ),
    ]
    for trigger, expected in cases:
        with pytest.raises(WorkflowInvalid) as caught:
            parse_workflow({"name": "w", "trigger": trigger, "action": SLACK}, source="test")
        assert expected in str(caught.value), (trigger, str(caught.value))


# duplicate starts ---------------------------------------------------------------------


def test_the_same_task_id_started_twice_without_a_retry_is_a_duplicate_start() -> None:
    eng = engine(DUPLICATE)
    out = feed(
        eng,
        [
            ev.sent("t1", T0, "app.charge"),
            ev.received("t1", T0 + 1, "app.charge"),
            ev.started("t1", T0 + 2),
            ev.received("t1", T0 + 30, "app.charge", hostname="celery@w2"),
            ev.started("t1", T0 + 31, hostname="celery@w2"),
            ev.started("t1", T0 + 31, hostname="celery@w2"),  # the same event delivered twice
            ev.succeeded("t1", T0 + 33, hostname="celery@w2"),
            ev.succeeded("t1", T0 + 34),
        ],
    )
    (record,) = out.records
    assert record.trigger.event == "task.duplicate_start"
    assert record.trigger.at == iso(T0 + 31)
    assert record.task is not None
    assert record.task.worker == "celery@w2"
    assert "no retry between" in record.trigger.reason


def test_a_celery_retry_starts_the_task_id_again_and_is_no_duplicate() -> None:
    eng = engine(DUPLICATE)
    out = feed(
        eng,
        [
            ev.sent("t1", T0, "app.charge"),
            ev.received("t1", T0 + 1, "app.charge"),
            ev.started("t1", T0 + 2),
            ev.sent("t1", T0 + 3, "app.charge", retries=1, hostname="gen9@w1"),
            ev.retried("t1", T0 + 3.1),
            ev.received("t1", T0 + 4, "app.charge", retries=1),
            ev.started("t1", T0 + 5),
            ev.succeeded("t1", T0 + 6),
        ],
    )
    assert out.records == []


def test_a_retry_whose_start_arrives_before_its_received_is_no_duplicate() -> None:
    """Arrival order is not logical order: the retry's worker may report the start before
    the received event reaches us; the task-retried between the starts still tells."""
    eng = engine(DUPLICATE)
    out = feed(
        eng,
        [
            ev.received("t1", T0 + 1, "app.charge"),
            ev.started("t1", T0 + 2),
            ev.retried("t1", T0 + 3),
            ev.started("t1", T0 + 5, hostname="celery@w2"),
            ev.received("t1", T0 + 4, "app.charge", retries=1, hostname="celery@w2"),
            ev.succeeded("t1", T0 + 6, hostname="celery@w2"),
        ],
    )
    assert out.records == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4))
def test_duplicates_counted_per_attempt_never_across_retries(starts: list[int]) -> None:
    """Attempt ``k`` of a Celery-retried task starts ``starts[k]`` times: every start past the
    first of an attempt is one duplicate, and a retry between starts never is."""
    eng = engine(DUPLICATE)
    stream, t = [], T0
    for attempt, count in enumerate(starts):
        stream.append(ev.received("t1", t, "app.x", retries=attempt))
        for _ in range(count):
            t += 1
            stream.append(ev.started("t1", t))
        t += 1
        stream.append(ev.retried("t1", t))
        t += 1
    out = feed(eng, stream)
    assert len(out.records) == sum(c - 1 for c in starts)
    assert len({r.execution_id for r in out.records}) == len(out.records)
