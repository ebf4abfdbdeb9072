"""The mark a worker gone offline leaves, written once for the live app and replay."""

from __future__ import annotations

from flowguard.engine.detect import GoneSlot
from topics.scheduled import WorkerGone


def test_a_worker_gone_after_a_grace_is_answerable_only_for_starts_before_it_went_offline() -> None:
    # A warm shutdown at 100 whose grace ran out at 103: a start reported for 101 is a
    # restarted worker's own, not an orphan of the one that left.
    gone = WorkerGone(cluster="c", hostname="w1", at=103.0, reason="r", started_before=100.0)
    assert GoneSlot.of(gone).offline_at == 100.0


def test_a_worker_gone_at_once_is_marked_when_it_went() -> None:
    gone = WorkerGone(cluster="c", hostname="w1", at=103.0, reason="r")
    assert GoneSlot.of(gone).offline_at == 103.0
