"""When the live app may judge an absence (no heartbeat, no finish, a retry not received).

Absence is judged on applied input only. About once a second the worker asks the broker for
the end offset of each events partition it holds, noting when it asked. A tick for a key
takes the latest such answer as its mark; it waits until every event below the mark is
applied (after a takeover, or under load), and then judges **as of when the broker was
asked**: everything sent before then is below the mark and applied, so "nothing since" holds
at that moment, and not necessarily now.

Two ways to get this wrong were seen in the soak (``bench/soak.py``) on a busy machine, each
judging a live Celery worker offline while the worker ran a few seconds behind its stream:
judging at the wall clock once the mark was reached, and taking the mark from the consumer's
own highwater, which is only as fresh as its last fetch of the partition (a consumer behind
its stream fetches a partition again only when it has used up what it holds).

The mark is fixed at the first look, so a stream that never runs dry still lets the tick
through once the backlog it saw is behind it.
"""

from __future__ import annotations


class AbsenceGate:
    """Per events partition: the last offset applied and the latest end offset seen (with
    when it was asked); per key: the first look's mark."""

    def __init__(self) -> None:
        self.applied: dict[int, int] = {}
        self._ends: dict[int, tuple[int, float]] = {}
        self._marks: dict[str, tuple[int, float]] = {}
        #: Per key: since when (wall clock) its tick has been held back.
        self._held_since: dict[str, float] = {}

    def reset(self, applied: dict[int, int]) -> None:
        """After an assignment: where each held partition's input starts again."""
        self.applied = applied
        self._ends.clear()
        self._marks.clear()
        self._held_since.clear()

    def observe(self, ends: dict[int, int], asked_at: float) -> None:
        """The broker's end offsets of the held events partitions, asked at ``asked_at``."""
        for partition, end in ends.items():
            self._ends[partition] = (end, asked_at)

    def judged_at(self, partition: int, key: str) -> float | None:
        """The time to judge ``key``'s absences at, or ``None``: wait (for the first answer
        from the broker, or for the backlog below the mark to be applied)."""
        mark = self._marks.pop(key, None)
        if mark is None:
            seen = self._ends.get(partition)
            if seen is None:
                return None
            end, asked_at = seen
            mark = (end - 1, asked_at)
        if self.applied.get(partition, -1) >= mark[0]:
            return mark[1]
        self._marks[key] = mark
        return None

    def held(self, partition: int, key: str, now: float, longer_than: float) -> str | None:
        """Why ``key``'s tick is still held back, once it has been for ``longer_than`` seconds
        (then watched afresh), else ``None``; forgets the key when its tick went through."""
        since = self._held_since.setdefault(key, now)
        if now - since < longer_than:
            return None
        self._held_since[key] = now
        end = self._ends.get(partition)
        mark = self._marks.get(key)
        return (
            f"applied up to offset {self.applied.get(partition, -1)}, mark "
            f"{mark[0] if mark else None}, end offset {end[0] if end else 'never asked'}"
        )

    def passed(self, key: str) -> None:
        """``key``'s tick went through."""
        self._held_since.pop(key, None)
