"""bridge/buffer.py: the bound, drops counted by kind, put_back at the front, take/take_now."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridge.buffer import Entry, EventBuffer

KINDS = ("task.sent", "task.failed", "worker.heartbeat", "dlq")


def entry(n: int, kind: str = "task.sent") -> Entry:
    return Entry("fg.events", f"c/{n}".encode(), str(n).encode(), kind)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_put_beyond_the_bound_drops_and_counts_by_kind(loop: asyncio.AbstractEventLoop) -> None:
    buffer = EventBuffer(2, loop)
    assert buffer.put(entry(1))
    assert buffer.put(entry(2))
    assert not buffer.put(entry(3, "task.failed"))
    assert not buffer.put(entry(4, "task.failed"))
    assert not buffer.put(entry(5, "worker.heartbeat"))
    assert len(buffer) == 2
    assert buffer.dropped == Counter({"task.failed": 2, "worker.heartbeat": 1})
    assert [e.value for e in buffer.take_now(10)] == [b"1", b"2"]
    assert buffer.put(entry(6)), "room again once the consumer took"


def test_put_back_goes_to_the_front_in_order_and_may_pass_the_bound(
    loop: asyncio.AbstractEventLoop,
) -> None:
    buffer = EventBuffer(3, loop)
    for n in range(3):
        buffer.put(entry(n))
    batch = buffer.take_now(2)
    buffer.put(entry(10))
    buffer.put(entry(11))  # full again: 2, 10, 11
    buffer.put_back(batch)
    assert len(buffer) == 5, "a refused batch is kept even past the bound"
    assert not buffer.put(entry(12)), "but nothing new is taken in until it drains"
    assert [e.value for e in buffer.take_now(100)] == [b"0", b"1", b"2", b"10", b"11"]


def test_take_now_never_waits(loop: asyncio.AbstractEventLoop) -> None:
    buffer = EventBuffer(5, loop)
    assert buffer.take_now(3) == []
    buffer.put(entry(1))
    assert [e.value for e in buffer.take_now(3)] == [b"1"]


def test_take_returns_at_most_limit_at_once(loop: asyncio.AbstractEventLoop) -> None:
    buffer = EventBuffer(10, loop)
    for n in range(5):
        buffer.put(entry(n))
    first = loop.run_until_complete(buffer.take(3))
    second = loop.run_until_complete(buffer.take(3))
    assert [e.value for e in first + second] == [str(n).encode() for n in range(5)]
    assert len(first) == 3


def test_take_waits_for_a_put_from_another_thread(loop: asyncio.AbstractEventLoop) -> None:
    buffer = EventBuffer(10, loop)

    async def scenario() -> list[Entry]:
        waiting = asyncio.create_task(buffer.take(10))
        await asyncio.sleep(0)  # let take() find the buffer empty and wait
        assert not waiting.done()
        putter = threading.Thread(target=buffer.put, args=(entry(7),))
        putter.start()
        putter.join()
        return await asyncio.wait_for(waiting, 5)

    assert [e.value for e in loop.run_until_complete(scenario())] == [b"7"]


def test_take_wakes_for_every_empty_to_nonempty_change(loop: asyncio.AbstractEventLoop) -> None:
    """A wake-up left over from an earlier put must not make take() return empty-handed."""
    buffer = EventBuffer(10, loop)

    async def scenario() -> list[bytes]:
        got: list[bytes] = []
        for n in range(3):
            buffer.put(entry(n))  # each put sees an empty buffer and schedules a wake-up
            got += [e.value for e in buffer.take_now(10)]
        waiting = asyncio.create_task(buffer.take(10))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the stale wake-ups have run; take() is waiting again
        assert not waiting.done()
        threading.Thread(target=buffer.put, args=(entry(9),)).start()
        got += [e.value for e in await asyncio.wait_for(waiting, 5)]
        return got

    assert loop.run_until_complete(scenario()) == [b"0", b"1", b"2", b"9"]


class BufferMachine(RuleBasedStateMachine):
    """Any sequence of put / take / take_now / put_back against a plain deque model.

    Checks: received == taken + dropped + buffered; order is the model's; only a put on a
    full buffer drops; a put_back exceeds the bound by at most one batch.
    """

    BOUND = 5
    BATCH = 4

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.buffer = EventBuffer(self.BOUND, self.loop)
        self.model: deque[Entry] = deque()
        self.dropped: Counter[str] = Counter()
        self.received = 0
        self.taken = 0
        self.next = 0
        self.last_batch: list[Entry] = []

    def teardown(self) -> None:
        self.loop.close()

    @rule(kind=st.sampled_from(KINDS))
    def put(self, kind: str) -> None:
        item = entry(self.next, kind)
        self.next += 1
        self.received += 1
        accepted = self.buffer.put(item)
        assert accepted == (len(self.model) < self.BOUND)
        if accepted:
            self.model.append(item)
        else:
            self.dropped[kind] += 1

    @rule(limit=st.integers(1, BATCH))
    def take_now(self, limit: int) -> None:
        batch = self.buffer.take_now(limit)
        expected = [self.model.popleft() for _ in range(min(limit, len(self.model)))]
        assert batch == expected
        self.taken += len(batch)
        self.last_batch = batch

    @precondition(lambda self: len(self.model) > 0)
    @rule(limit=st.integers(1, BATCH))
    def take(self, limit: int) -> None:
        batch = self.loop.run_until_complete(self.buffer.take(limit))
        expected = [self.model.popleft() for _ in range(min(limit, len(self.model)))]
        assert batch == expected
        self.taken += len(batch)
        self.last_batch = batch

    @precondition(lambda self: len(self.last_batch) > 0)
    @rule(data=st.data())
    def put_back(self, data: st.DataObject) -> None:
        """What the publisher puts back: the failed ones of a batch, in order, then the rest."""
        keep = data.draw(st.lists(st.booleans(), min_size=len(self.last_batch),
                                  max_size=len(self.last_batch)))  # fmt: skip
        refused = [e for e, k in zip(self.last_batch, keep, strict=True) if k]
        self.buffer.put_back(refused)
        self.model.extendleft(reversed(refused))
        self.taken -= len(refused)
        self.last_batch = []

    @invariant()
    def accounted(self) -> None:
        assert self.received == self.taken + sum(self.dropped.values()) + len(self.buffer)
        assert self.buffer.dropped == self.dropped
        assert len(self.buffer) <= self.BOUND + self.BATCH

    @invariant()
    def same_order(self) -> None:
        assert list(self.buffer._items) == list(self.model)


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


@given(st.lists(st.sampled_from(KINDS), max_size=50), st.integers(1, 10))
def test_drops_by_kind_sum_to_what_did_not_fit(kinds: list[str], bound: int) -> None:
    loop = asyncio.new_event_loop()
    try:
        buffer = EventBuffer(bound, loop)
        for n, kind in enumerate(kinds):
            buffer.put(entry(n, kind))
        assert sum(buffer.dropped.values()) == max(0, len(kinds) - bound)
        assert buffer.dropped == Counter(kinds[bound:])
    finally:
        loop.close()
