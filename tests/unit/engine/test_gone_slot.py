"""The mark a worker gone offline leaves, written once for the live app and replay."""

from __future__ import annotations

from flowguard.engine.detect import GoneSlot, offline_by
from topics.scheduled import WorkerGone


def test_a_worker_gone_after_a_grace_is_answerable_only_for_starts_before_it_went_offline() -> None:
    # A warm shutdown at 100 whose grace ran out at 103: a start reported for 101 is a
    # restarted worker's own, not an orphan of the one that left.
    gone = WorkerGone(cluster="c", hostname="w1", at=103.0, reason="r", started_before=100.0)
    assert GoneSlot.of(gone).offline_at == 100.0


def test_a_worker_gone_at_once_is_marked_when_it_went() -> None:
    gone = WorkerGone(cluster="c", hostname="w1", at=103.0, reason="r")
    assert GoneSlot.of(gone).offline_at == 103.0


def test_a_start_up_to_the_mark_is_the_gone_workers_and_a_later_one_a_new_lifes() -> None:
    mark = GoneSlot(offline_at=100.0)
    assert (offline_by(mark, 99.0), offline_by(mark, 100.0)) == (True, True)
    assert (offline_by(mark, 100.5), offline_by(None, 50.0)) == (False, False)
