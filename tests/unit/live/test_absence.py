"""flowguard/live/absence.py: absences are judged as of when the input was all there."""

from __future__ import annotations

from flowguard.live.absence import AbsenceGate


def test_a_tick_behind_its_backlog_waits_then_judges_as_of_its_first_look() -> None:
    gate = AbsenceGate()
    gate.reset({3: 99})  # applied up to offset 99; 150 records on the partition
    assert gate.judged_at(3, "prod/celery@w1", now=1000.0, highwater=250) is None
    gate.applied[3] = 200
    assert gate.judged_at(3, "prod/celery@w1", now=1004.0, highwater=400) is None
    gate.applied[3] = 249  # the backlog of the first look is applied, 4.5 s later
    # Judged as of 1000.0: a heartbeat sent at 1001 may still wait behind offset 249, so
    # "no heartbeat since" holds only up to the first look (judging at 1004.5 was the bug).
    assert gate.judged_at(3, "prod/celery@w1", now=1004.5, highwater=500) == 1000.0


def test_a_caught_up_partition_judges_now_and_each_key_keeps_its_own_mark() -> None:
    gate = AbsenceGate()
    gate.reset({0: 9, 1: 4})
    assert gate.judged_at(0, "a", now=50.0, highwater=10) == 50.0
    assert gate.judged_at(1, "b", now=50.0, highwater=20) is None
    assert gate.judged_at(0, "a", now=51.0, highwater=10) == 51.0  # no mark kept once judged
    gate.applied[1] = 19
    assert gate.judged_at(1, "b", now=53.0, highwater=30) == 50.0


def test_nothing_fetched_yet_waits_and_a_reassignment_drops_old_marks() -> None:
    gate = AbsenceGate()
    assert gate.judged_at(0, "a", now=1.0, highwater=None) is None
    gate.reset({0: 0})
    assert gate.judged_at(0, "a", now=2.0, highwater=100) is None
    gate.reset({0: 99})  # another assignment: the first look starts again
    assert gate.judged_at(0, "a", now=9.0, highwater=100) == 9.0
