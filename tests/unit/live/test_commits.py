"""flowguard/live/commits.py: never commit past a record no agent acknowledged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flowguard.live.commits import behind_commits, in_turn, unread_below


def test_the_record_at_the_committed_offset_dropped_and_the_next_acked_is_a_hole() -> None:
    # The fault trial's case: committed 26 (the next to read), 26 dropped, 27 decided.
    # Faust's own check (min(acked) - committed > 1) let it through and committed 28.
    assert unread_below([27], 26) == (26, 26)
    assert unread_below([30, 29], 26) == (26, 28)


def test_acks_that_start_at_the_committed_offset_or_nothing_known_are_fine() -> None:
    assert unread_below([26, 27, 29], 26) is None  # a later gap is Faust's own to find
    assert unread_below([], 26) is None
    assert unread_below([5], None) is None


@given(st.integers(0, 1000), st.lists(st.integers(0, 50), min_size=1, max_size=20))
def test_a_hole_is_the_offsets_below_the_first_ack(committed: int, steps: list[int]) -> None:
    acked = [committed + step for step in steps]
    hole = unread_below(acked, committed)
    if min(steps) == 0:
        assert hole is None
    else:
        assert hole == (committed, committed + min(steps) - 1)


def test_a_record_is_next_ahead_or_behind_the_offset_detection_expects() -> None:
    assert in_turn(None, 7) == "next"  # nothing expected yet
    assert in_turn(16, 16) == "next"
    assert in_turn(16, 18) == "ahead"  # 16 and 17 were dropped: read again
    # A stale record handed over after the partition was (re)started at 16: taking it as
    # next held every absence on the partition for good (expected 1, records 1-15 never
    # came again).
    assert in_turn(16, 0) == "behind"


def test_marks_move_up_to_a_commit_that_passed_them() -> None:
    committed = {"a": 6, "b": 3, "c": None, "d": 0}
    expected = {"a": 3, "b": 3, "c": 5, "d": 0, "e": 1}
    # a: committed past what detection expects (records applied before a rebalance,
    # committed after its marks were set); the others stay.
    assert behind_commits(expected, committed.get) == {"a": 6}
