"""What the worker lets Faust commit on its input topics.

Faust commits, per partition, the longest run of consecutive acknowledged offsets that starts
where the last commit ended. It takes that committed offset for the last record read, but
Kafka's committed offset is the next record to read: so when the record right at it was never
handed to an agent (fetched while the flow was suspended at a rebalance, and dropped), and
the next one was, Faust sees no gap and commits past it unread. A fault trial
(``bench/trials.py``) lost a retry this way: a trigger skipped by the new owner of its
partition, the one after it decided. The worker's inputs never skip offsets (no compaction,
no transactions), so their acknowledged offsets must start exactly at the committed one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, TypeVar

K = TypeVar("K")


def unread_below(acked: Sequence[int], committed: int | None) -> tuple[int, int] | None:
    """The offsets (first, last) between the committed offset and the first acknowledged one
    that were never acknowledged, or ``None`` when the acknowledged ones start where they
    should (or nothing is known: no acknowledgement, no committed offset)."""
    if not acked or committed is None:
        return None
    first = min(acked)
    return (committed, first - 1) if first > committed else None


def in_turn(expected: int | None, offset: int) -> Literal["next", "ahead", "behind"]:
    """Where a record read for detection stands against the next offset it expects on the
    partition (``None``: nothing expected yet, so this one is next).

    ``ahead``: records before it were dropped (read the partition again from its committed
    offset). ``behind``: it was applied already, or lies below the offset the partition was
    (re)started at: a record fetched before a rebalance or a seek and handed over after it.
    Taking one as next moved detection back to it for good: after a takeover the new owner
    applied a stale record at offset 0 of a partition committed at 16, expected offset 1
    from then on, and held every absence on that partition (a delayed retry's deadline among
    them) until records 1-15 came again, which they never did (tests/e2e/test_live_resilience.py).
    """
    if expected is None or offset == expected:
        return "next"
    return "ahead" if offset > expected else "behind"


def behind_commits(expected: Mapping[K, int], committed: Callable[[K], int | None]) -> dict[K, int]:
    """The partitions whose committed offset passed the next offset detection expects, with
    that committed offset: everything below a commit was applied (a commit covers only
    records acknowledged after their slots were written, by this process or the partition's
    owner before it), so detection's marks may move up to it."""
    found = {}
    for key, offset in expected.items():
        done = committed(key)
        if done and done > offset:
            found[key] = done
    return found
