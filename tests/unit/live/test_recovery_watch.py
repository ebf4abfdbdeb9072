"""flowguard/live/readiness.RecoveryWatch: how long a table recovery has read nothing."""

from __future__ import annotations

from flowguard.live.readiness import RecoveryWatch


def test_a_recovery_that_reads_is_never_stalled() -> None:
    watch = RecoveryWatch()
    for step, remaining in enumerate([900, 600, 300, 1]):
        assert watch.stalled_for(remaining, now=10.0 * step) == 0.0


def test_a_recovery_that_reads_nothing_is_stalled_since_its_last_change() -> None:
    watch = RecoveryWatch()
    assert watch.stalled_for(500, now=0.0) == 0.0
    assert watch.stalled_for(400, now=5.0) == 0.0
    assert watch.stalled_for(400, now=50.0) == 45.0
    assert watch.stalled_for(400, now=100.0) == 95.0


def test_a_new_recovery_starts_afresh() -> None:
    watch = RecoveryWatch()
    watch.stalled_for(400, now=0.0)
    assert watch.stalled_for(400, now=60.0) == 60.0
    assert watch.stalled_for(None, now=61.0) == 0.0, "recovery done"
    assert watch.stalled_for(400, now=200.0) == 0.0, "another recovery, the same count"
    assert watch.stalled_for(400, now=230.0) == 30.0
