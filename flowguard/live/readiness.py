"""What ``/readyz`` of ``flowguard worker`` checks, and the lag it exports.

Ready means the worker is doing its job, not merely running:

- **assigned**: the consumer group gave it its partitions and their tables are recovered
  (no rebalance or recovery under way for longer than ``progress_stall_seconds``);
- **feed**: the workflow feed runs and has caught up with ``<prefix>.workflows`` within
  ``progress_stall_seconds`` (:mod:`flowguard.live.feed`), so the workflow table is current;
- **progress**: on every partition of the agents' input it holds, the committed offset moved
  within ``progress_stall_seconds`` whenever records wait behind it (a partition with nothing
  to read is fine however long it is quiet).

Not ready is logged once with the reasons (:class:`flowguard.health.Health`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import faust
from faust.types import TP

from flowguard.live.feed import WorkflowFeed
from flowguard.live.wiring import Topics
from flowguard.metrics import CONSUMER_LAG, TABLE_KEYS

K = TypeVar("K")


class Readiness:
    """The worker's checks, judged on the monotonic clock."""

    def __init__(
        self, app: faust.App, topics: Topics, feed: WorkflowFeed, stall_seconds: float,
        reread_seconds: float,
    ) -> None:  # fmt: skip
        self.app, self.topics, self._feed = app, topics, feed
        self.stall_seconds, self.reread_seconds = stall_seconds, reread_seconds
        self.started = time.monotonic()
        self.assigned_at: float | None = None  # the last rebalance completed
        self._busy_since: float | None = None  # a rebalance or recovery began
        #: Per partition: the committed offset last seen, and since when.
        self._marks: dict[TP, tuple[int | None, float]] = {}
        #: The same for :meth:`stalled`, which starts afresh after each partition it reports.
        self._reread_marks: dict[TP, tuple[int | None, float]] = {}
        self._lagged: set[TP] = set()
        #: The broker's end offsets of the input partitions held, asked about once a second.
        self._ends: dict[TP, int] = {}

    def checks(self) -> dict[str, Any]:
        return {"assigned": self.assigned, "feed": self.feed, "progress": self.progress}

    def on_assigned(self) -> None:
        self.assigned_at = time.monotonic()
        self._ends.clear()

    def observe_ends(self, ends: dict[TP, int]) -> None:
        """The broker's end offsets of input partitions held (see :meth:`_lags`)."""
        self._ends.update(ends)

    def assigned(self) -> str | None:
        app, now = self.app, time.monotonic()
        if self.assigned_at is None:
            return f"no partitions assigned yet ({now - self.started:.0f}s since start)"
        if app.rebalancing or app.in_recovery:
            self._busy_since = self._busy_since or now
            busy = now - self._busy_since
            if busy > self.stall_seconds:
                what = "recovering tables" if app.in_recovery else "rebalancing"
                return f"{what} for {busy:.0f}s"
            return None
        self._busy_since = None
        return None

    def feed(self) -> str | None:
        return self._feed.problem(self.stall_seconds)

    def progress(self) -> str | None:
        """Partitions whose committed offset stays put while records wait behind it."""
        now, stuck = time.monotonic(), []
        for tp, lag, committed in self._lags():
            waited = _stuck_for(self._marks, tp, lag, committed, now)
            if waited > self.stall_seconds:
                stuck.append(
                    f"{tp.topic}[{tp.partition}] at offset {committed} with {lag} records "
                    f"waiting for {waited:.0f}s"
                )
        if not stuck:
            return None
        return "no progress on " + ", ".join(stuck[:5]) + (" ..." if len(stuck) > 5 else "")

    def stalled(self, delivering: Callable[[TP], bool]) -> list[tuple[Any, int | None]]:
        """(partition, committed offset) of the input partitions whose committed offset has
        not moved while records wait for longer than ``reread_stall_seconds``; each is
        reported once, then watched afresh. An outbox partition with a delivery in flight
        (``delivering(tp)``) is not: the delivery holds its commit on purpose. One with none
        is, like the others: a fault trial left a notice undelivered for good, its request
        dropped at a rebalance and never read again while the outbox was never re-read."""
        now, found = time.monotonic(), []
        outbox = set(self.topics.deliveries.topics)
        for tp, lag, committed in self._lags():
            if tp.topic in outbox and delivering(tp):
                self._reread_marks.pop(tp, None)
                continue
            if _stuck_for(self._reread_marks, tp, lag, committed, now) > self.reread_seconds:
                found.append((tp, committed))
                self._reread_marks[tp] = (committed, now)
        return found

    def export_lag(self) -> None:
        """``flowguard_consumer_lag_records`` of the partitions held now (others removed), and
        ``flowguard_table_keys`` of each table (its local store: the partitions held)."""
        for name, table in self.app.tables.items():
            TABLE_KEYS.labels(name).set(len(table))
        held = set()
        for tp, lag, _ in self._lags():
            held.add(tp)
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
        for tp in self._lagged - held:
            CONSUMER_LAG.remove(tp.topic, str(tp.partition))
            self._marks.pop(tp, None)
            self._reread_marks.pop(tp, None)
        self._lagged = held

    def _lags(self) -> list[tuple[TP, int, int | None]]:
        """(partition, records waiting, committed offset) for each input partition held.

        Records waiting are counted up to the broker's end offset when it was asked, else up
        to the consumer's highwater: that is only as fresh as the consumer's last fetch of the
        partition, and a partition it stopped fetching (its records fetched and dropped at a
        rebalance, then passed over) never shows a backlog, so it was never read again."""
        consumer: Any = self.app.consumer  # the driver's consumer; ConsumerT lacks these
        inputs = self.topics.inputs()
        found = []
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            highwater = self._ends.get(tp)
            if highwater is None:
                highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # nothing fetched or asked yet: its backlog is unknown
            committed = consumer._committed_offset.get(tp)
            found.append((tp, highwater - (committed or 0), committed))
        return found


def _stuck_for(
    marks: dict[K, tuple[int | None, float]], tp: K, lag: int, committed: int | None,
    now: float,
) -> float:  # fmt: skip
    """How long ``tp``'s committed offset has stayed put with records waiting (0 while it
    moves or nothing waits); ``marks`` keeps the offset last seen and since when."""
    seen, since = marks.get(tp, (committed, now))
    if committed != seen or lag <= 0:
        since = now
    marks[tp] = (committed, since)
    return now - since


class RecoveryWatch:
    """How long a table recovery has made no progress: the records it still has to read
    (Faust's ``active_remaining_total``) have not changed. Faust's recovery can wedge after a
    rebalance: it seeks and resumes the changelog partitions, then never receives a record
    from them ("No event received for active tp ... since recovery start", for good; seen in
    a fault trial, faust-streaming/faust#155), and the worker holds its partitions unread."""

    def __init__(self) -> None:
        self._marks: dict[str, tuple[int | None, float]] = {}  # remaining, and since when

    def stalled_for(self, remaining: int | None, now: float) -> float:
        """``remaining``: the records still to read, ``None`` when no recovery runs. The same
        rule as a partition's committed offset staying put (:func:`_stuck_for`)."""
        if remaining is None:
            self._marks.clear()
            return 0.0
        return _stuck_for(self._marks, "active", 1, remaining, now)
