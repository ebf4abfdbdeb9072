"""The bounded buffer between Celery's receiver thread and the Kafka producer.

Celery's event queue cannot be paused for long (its messages expire after
seconds), so the receiver never waits: when the buffer is full the event is
dropped and counted by kind. Events that Kafka refused go back to the front,
in order, so a retried batch keeps its place; they may take the buffer past its
bound by one batch, never more.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    """One record to produce: ``kind`` is the event kind (``dlq`` for dead letters)."""

    topic: str
    key: bytes
    value: bytes
    kind: str


class EventBuffer:
    """Thread-safe on the put side; one asyncio consumer takes batches."""

    def __init__(self, bound: int, loop: asyncio.AbstractEventLoop) -> None:
        self.bound = bound
        self._items: deque[Entry] = deque()
        self._lock = threading.Lock()
        self._loop = loop
        self._ready = asyncio.Event()
        self.dropped: Counter[str] = Counter()

    def put(self, entry: Entry) -> bool:
        """From any thread. False (and counted) when full."""
        with self._lock:
            if len(self._items) >= self.bound:
                self.dropped[entry.kind] += 1
                return False
            self._items.append(entry)
            wake = len(self._items) == 1
        if wake:
            self._loop.call_soon_threadsafe(self._ready.set)
        return True

    def drop(self, entry: Entry) -> None:
        """Count an entry that will never be sent (Kafka refused it for good)."""
        with self._lock:
            self.dropped[entry.kind] += 1

    def __len__(self) -> int:
        return len(self._items)

    async def take(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries, waiting until there is at least one."""
        while True:
            with self._lock:
                if self._items:
                    count = min(limit, len(self._items))
                    return [self._items.popleft() for _ in range(count)]
                self._ready.clear()
            await self._ready.wait()

    def take_now(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries without waiting (empty when there are none)."""
        with self._lock:
            count = min(limit, len(self._items))
            return [self._items.popleft() for _ in range(count)]

    def put_back(self, entries: list[Entry]) -> None:
        """Entries Kafka refused, back at the front in their order."""
        with self._lock:
            self._items.extendleft(reversed(entries))
