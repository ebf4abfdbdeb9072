"""flowguard/live/absence.py: absences are judged as of when the input was all there."""

from __future__ import annotations

from flowguard.live.absence import AbsenceGate


def test_a_tick_behind_its_backlog_waits_then_judges_as_of_when_the_broker_was_asked() -> None:
    gate = AbsenceGate()
    gate.reset({3: 99})  # applied up to offset 99
    gate.observe({3: 250}, asked_at=1000.0)  # 150 records on the partition at 1000.0
    assert gate.judged_at(3, "prod/celery@w1") is None
    gate.applied[3] = 200
    gate.observe({3: 400}, asked_at=1004.0)
    assert gate.judged_at(3, "prod/celery@w1") is None  # the mark stays where it was first
    gate.applied[3] = 249  # the backlog of the first look is applied, 4.5 s later
    # Judged as of 1000.0: a heartbeat sent at 1001 may still wait behind offset 249, so
    # "no heartbeat since" holds only up to then (judging at the wall clock was the bug).
    assert gate.judged_at(3, "prod/celery@w1") == 1000.0


def test_each_key_keeps_its_own_mark_and_a_judged_key_starts_afresh() -> None:
    gate = AbsenceGate()
    gate.reset({0: 9, 1: 4})
    gate.observe({0: 10, 1: 20}, asked_at=50.0)
    assert gate.judged_at(0, "a") == 50.0  # caught up: judged as of the answer
    assert gate.judged_at(1, "b") is None
    gate.observe({0: 10, 1: 30}, asked_at=51.0)
    assert gate.judged_at(0, "a") == 51.0  # no mark kept once judged: the newest answer
    gate.applied[1] = 19
    assert gate.judged_at(1, "b") == 50.0


def test_no_answer_from_the_broker_yet_waits_and_a_reassignment_drops_everything() -> None:
    gate = AbsenceGate()
    gate.reset({0: 99})
    assert gate.judged_at(0, "a") is None  # the consumer's own highwater is never used
    gate.observe({0: 200}, asked_at=5.0)
    assert gate.judged_at(0, "a") is None
    gate.reset({0: 199})  # another assignment: marks and answers start again
    assert gate.judged_at(0, "a") is None
    gate.observe({0: 200}, asked_at=9.0)
    assert gate.judged_at(0, "a") == 9.0


def test_a_tick_held_back_for_long_says_why_once_per_period_and_forgets_once_through() -> None:
    gate = AbsenceGate()
    gate.reset({0: 3})
    assert gate.judged_at(0, "k") is None  # no end offset asked yet
    assert gate.held(0, "k", now=100.0, longer_than=15) is None
    assert gate.held(0, "k", now=114.0, longer_than=15) is None
    why = gate.held(0, "k", now=115.0, longer_than=15)
    assert why == "applied up to offset 3, mark None, end offset never asked"
    assert gate.held(0, "k", now=120.0, longer_than=15) is None  # watched afresh
    gate.observe({0: 9}, asked_at=121.0)
    assert gate.judged_at(0, "k") is None  # 4..8 not applied yet
    assert gate.held(0, "k", now=130.0, longer_than=15) == (
        "applied up to offset 3, mark 8, end offset 9"
    )
    gate.applied[0] = 8
    assert gate.judged_at(0, "k") == 121.0
    gate.passed("k")
    assert gate.held(0, "k", now=131.0, longer_than=15) is None
