"""What the worker's readiness and re-read see as records waiting on a partition.

A partition the consumer stopped fetching (its records fetched and dropped at a rebalance and
passed over) keeps its last highwater, or none at all after an assignment: judged by the
consumer's highwater alone, its backlog was invisible, so it was never read again and the
failures on it were never decided (seen in tests/e2e/test_live_resilience.py). The broker's
end offsets, asked once a second, show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from flowguard.live.readiness import Readiness

EVENTS = TP("p.events", 0)
TRIGGERS = TP("p.triggers", 0)
OUTBOX = TP("p.deliveries", 0)


def IDLE(tp: TP) -> bool:
    """No delivery in flight."""
    return False


@dataclass
class Consumer:
    """What Readiness reads of Faust's consumer."""

    highwaters: dict[TP, int | None]
    _committed_offset: dict[TP, int] = field(default_factory=dict)

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]


def readiness(consumer: Consumer) -> Readiness:
    app: Any = SimpleNamespace(consumer=consumer, rebalancing=False, in_recovery=False)
    topics: Any = SimpleNamespace(
        inputs=lambda: {EVENTS.topic, TRIGGERS.topic, OUTBOX.topic},
        deliveries=SimpleNamespace(topics=("p.deliveries",)),
    )
    return Readiness(app, topics, feed=Any, stall_seconds=0.0, reread_seconds=0.0)


def test_a_partition_never_fetched_since_the_assignment_is_read_again_at_the_broker_end() -> None:
    consumer = Consumer({EVENTS: None, TRIGGERS: 7}, {EVENTS: 4, TRIGGERS: 7})
    ready = readiness(consumer)
    ready.stalled(IDLE)  # first look: marks taken
    assert ready.stalled(IDLE) == []  # events: backlog unknown; triggers: nothing waits

    ready.observe_ends({EVENTS: 9, TRIGGERS: 7})
    ready.stalled(IDLE)
    assert ready.stalled(IDLE) == [(EVENTS, 4)]
    ready.progress()
    assert "p.events[0] at offset 4 with 5 records waiting" in (ready.progress() or "")


def test_the_broker_end_counts_over_a_stale_highwater() -> None:
    consumer = Consumer({EVENTS: 4}, {EVENTS: 4})  # fetched up to 4 once, then not again
    ready = readiness(consumer)
    ready.stalled(IDLE)
    assert ready.stalled(IDLE) == []
    ready.observe_ends({EVENTS: 12})
    ready.stalled(IDLE)
    assert ready.stalled(IDLE) == [(EVENTS, 4)]


def test_a_new_assignment_forgets_the_ends_asked_before_it() -> None:
    consumer = Consumer({EVENTS: 4}, {EVENTS: 4})
    ready = readiness(consumer)
    ready.observe_ends({EVENTS: 12})
    ready.on_assigned()
    ready.stalled(IDLE)
    assert ready.stalled(IDLE) == []


def test_an_outbox_partition_is_read_again_only_with_no_delivery_in_flight() -> None:
    consumer = Consumer({OUTBOX: 2}, {OUTBOX: 1})  # request 1 waits behind the commit
    ready = readiness(consumer)
    ready.stalled(lambda tp: True)
    assert ready.stalled(lambda tp: True) == []  # a delivery holds the commit on purpose
    ready.stalled(IDLE)
    # Nothing in flight: the request was dropped at a rebalance and never handed over.
    assert ready.stalled(IDLE) == [(OUTBOX, 1)]
