"""When the live app may judge an absence (no heartbeat, no finish, a retry not received).

Absence is judged on applied input only. A tick for a key first looks at the highest offset
on the key's events partition; it waits until every event up to there is applied (after a
takeover, or under load), and then judges **as of that first look**: everything sent before
it was on the partition by then and is applied, so "nothing since" holds at that moment, and
not necessarily now. Judging at the wall clock instead made a worker that stays a few
seconds behind its stream find a live Celery worker offline at every tick (seen in the soak,
``bench/soak.py``, when the machine was busy).

The mark is fixed at the first look, so a stream that never runs dry still lets the tick
through once the backlog it saw is behind it.
"""

from __future__ import annotations


class AbsenceGate:
    """Per events partition: the last offset applied; per key: the first look's mark."""

    def __init__(self) -> None:
        self.applied: dict[int, int] = {}
        self._marks: dict[str, tuple[int, float]] = {}

    def reset(self, applied: dict[int, int]) -> None:
        """After an assignment: where each held partition's input starts again."""
        self.applied = applied
        self._marks.clear()

    def judged_at(
        self, partition: int, key: str, now: float, highwater: int | None
    ) -> float | None:
        """The time to judge ``key``'s absences at, or ``None``: wait for the backlog first.
        ``highwater``: the partition's next offset as the consumer last saw it (``None``:
        nothing fetched yet, its backlog is unknown)."""
        if highwater is None:
            return None
        mark, looked = self._marks.pop(key, (highwater - 1, now))
        if self.applied.get(partition, -1) >= mark:
            return looked
        self._marks[key] = (mark, looked)
        return None
