"""Detection's slots: written back once per key as their JSON, with an event of the key's
partition current, only when due; the events acked only after."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass
from typing import Any

from flowguard.engine.detect import ChainSlot, WorkerSlot
from flowguard.engine.tasks import Chain, TaskState
from flowguard.engine.workers import WorkerState
from flowguard.live.slots import Slots
from topics.commands import RetryCommand
from topics.scheduled import ScheduledRetry
from topics.triggers import Matched, Trigger


class FakeTable(dict[str, Any]):
    """The part of a Faust table the slots use; records the event current at each write."""

    def __init__(self, name: str, current: list[Any], **items: Any) -> None:
        super().__init__(**items)
        self.name = name
        self.current = current
        self.writes: list[tuple[str, Any, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append((key, value, self.current[-1]))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, None, self.current[-1]))
        super().__delitem__(key)


@dataclass
class Ev:
    partition: int
    offset: int


@dataclass
class Val:
    """A slot: its JSON is its text."""

    text: str

    def to_json(self) -> bytes:
        return self.text.encode()

    @classmethod
    def from_json(cls, data: bytes) -> Val:
        return cls(data.decode())


def slots(current: list[Any], max_age: float = 1.0, max_events: int = 100) -> Slots:
    loaders = {"chains": Val.from_json, "workers": Val.from_json}
    return Slots(loaders, max_age_seconds=max_age, max_events=max_events)


def test_each_key_is_written_once_with_the_last_event_that_changed_it_current() -> None:
    current: list[Any] = []
    chains = FakeTable("chains", current, old=b"kept")
    held = slots(current)
    held.put(chains, "a", Val("a1"), Ev(0, 1))
    held.put(chains, "b", Val("b1"), Ev(3, 2))
    held.put(chains, "a", Val("a2"), Ev(0, 5))
    held.hold([Ev(0, 1), Ev(3, 2), Ev(0, 5)], now=10.0)
    assert held.get(chains, "a") == Val("a2")
    assert held.get(chains, "old") == Val("kept")
    assert chains.writes == []  # nothing before the write-back

    assert held.write_back(current.append) == [Ev(0, 1), Ev(3, 2), Ev(0, 5)]
    assert chains.writes == [("a", b"a2", Ev(0, 5)), ("b", b"b1", Ev(3, 2))]
    assert held.get(chains, "a") == Val("a2")  # read back from the table once written
    assert held.write_back(current.append) == []
    assert held.writes == 2


def test_a_chain_forgotten_before_the_write_back_is_never_written() -> None:
    current: list[Any] = []
    chains = FakeTable("chains", current, stored=b"x")
    held = slots(current)
    held.put(chains, "short", Val("sent"), Ev(1, 1))
    held.put(chains, "short", None, Ev(1, 4))  # settled within the window
    held.put(chains, "stored", None, Ev(1, 2))
    assert held.get(chains, "stored") is None
    held.write_back(current.append)
    assert chains.writes == [("stored", None, Ev(1, 2))]
    assert "stored" not in chains


def test_write_back_is_due_by_age_of_the_oldest_held_event_or_by_count() -> None:
    current: list[Any] = []
    held = slots(current, max_age=1.0, max_events=3)
    assert not held.due(100.0)
    held.hold([Ev(0, 1)], now=10.0)
    held.hold([Ev(0, 2)], now=10.8)
    assert not held.due(10.9)
    assert held.due(11.0)
    held.write_back(current.append)
    held.hold([Ev(0, 3), Ev(0, 4)], now=20.0)
    assert not held.due(20.0)
    held.hold([Ev(0, 5)], now=20.1)
    assert held.due(20.1)


def test_a_rebalance_drops_what_was_held_so_it_is_read_again() -> None:
    current: list[Any] = []
    chains = FakeTable("chains", current)
    held = slots(current)
    held.put(chains, "a", Val("a1"), Ev(0, 1))
    held.hold([Ev(0, 1)], now=1.0)
    held.forget()
    assert held.get(chains, "a") is None
    assert not held.due(100.0)
    assert held.write_back(current.append) == []
    assert chains.writes == []


def test_items_see_changes_not_yet_written_over_the_table() -> None:
    current: list[Any] = []
    chains = FakeTable("chains", current, a=b"old-a", b=b"old-b", c=b"old-c")
    workers = FakeTable("workers", current, w=b"w")
    held = slots(current)
    held.put(chains, "a", Val("new-a"), Ev(0, 1))
    held.put(chains, "b", None, Ev(0, 2))
    held.put(chains, "d", Val("new-d"), Ev(0, 3))
    held.put(workers, "a", Val("worker-a"), Ev(0, 4))
    assert dict(held.items(chains)) == {"a": Val("new-a"), "c": Val("old-c"), "d": Val("new-d")}


COMMAND = RetryCommand(
    command_id="cmd", cluster="prod", execution_id="e1", workflow_id="w",
    issued_at="2026-12-04T10:00:00Z",
    task_id="r1", original_task_id="t1", name="app.t", args="()", kwargs="{}", root_id="t1",
    parent_id="t1", attempt=1,
)  # fmt: skip
SCHEDULED = ScheduledRetry(chain_key="prod/t1", due_at=12.0, since=9.0, command=COMMAND)
MATCHED = Matched(
    workflow_id="w", workflow_version=1,
    trigger=Trigger(trigger_id="tr", event="task.failed", at=9.5, cluster="prod"),
)  # fmt: skip


def test_slots_survive_their_json() -> None:
    task = TaskState(task_id="t1", root_id="t1", name="app.t", args="(1,)", exceeded=[30.0])
    chain = ChainSlot(
        Chain(cluster="prod", root_id="t1", tasks={"t1": task}, failures=2, updated_at=9.5),
        offset=41,
        emitted={"40": [MATCHED]},
        pending={"cmd": SCHEDULED},
    )
    assert ChainSlot.from_json(chain.to_json()) == chain
    worker = WorkerSlot(WorkerState(cluster="prod", hostname="w1", online=True, freq=2.0), 7)
    assert WorkerSlot.from_json(worker.to_json()) == worker


def test_a_stored_slot_costs_about_its_length_in_memory() -> None:
    """What the tables keep per chain (orjson's own output holds its whole 8 KB buffer)."""
    task = TaskState(task_id="t1", root_id="t1", name="app.t", args="(1,)")
    chain = ChainSlot(Chain(cluster="prod", root_id="t1", tasks={"t1": task}))
    tracemalloc.start()
    try:
        kept = [chain.to_json() for _ in range(1000)]
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert traced < 2 * sum(len(k) for k in kept) + 64 * 1024
