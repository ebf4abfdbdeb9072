"""Detection's table slots, written back in bulk, and the events that wait for them.

Every write to a Faust table produces a changelog record, and each one costs more than
everything the engine does for an event. Most chains need none: a task that is sent,
received, started and succeeds within a second or two is forgotten as soon as it settles.
So :class:`Slots` keeps the slots that detection changed (write-behind) and writes each one
once, when the oldest change is ``max_age_seconds`` old or ``max_events`` events wait. A
chain that settles before then is never written at all.

The events wait too: they are acked only once the slots they changed are written, so Faust
never commits an offset past state that exists only in this process. After a crash, the
events since the last commit are applied again, and everything they cause downstream is
deduplicated by id. On a rebalance, whatever was held is dropped and read again from the
committed offsets.

The tables hold each slot as its JSON (``value_type=bytes``): a slot is decoded the first
time a window reads it and encoded once when it is written.

Faust routes a table write, and the RocksDB store files it, by the partition of the
*current event*. So each key is written with the last event that changed it made current:
an event of the key's own partition, since input topics and tables are co-partitioned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from faust.types import EventT, TableT

Table = TableT[str, bytes]


class _Slot(Protocol):
    def to_json(self) -> bytes: ...


class Slots:
    """Read through to the tables; written back when due; the events held until then."""

    def __init__(
        self,
        loaders: Mapping[str, Callable[[bytes], Any]],
        max_age_seconds: float,
        max_events: int,
    ) -> None:
        self._loaders = loaders
        self.max_age_seconds = max_age_seconds
        self.max_events = max_events
        self._dirty: dict[tuple[str, str], tuple[Table, Any, EventT[Any]]] = {}
        self._held: list[EventT[Any]] = []
        self._since: float | None = None
        self.writes = 0

    def get(self, table: Table, key: str) -> Any:
        held = self._dirty.get((table.name, key))
        if held is not None:
            return held[1]
        raw = table.get(key)
        return None if raw is None else self._loaders[table.name](raw)

    def put(self, table: Table, key: str, slot: _Slot | None, event: EventT[Any]) -> None:
        """``slot`` is the key's new value (``None``: forget it), written back with ``event``."""
        self._dirty[(table.name, key)] = (table, slot, event)

    def items(self, table: Table) -> Iterator[tuple[str, Any]]:
        """The table's keys and values as detection sees them (changes not written included)."""
        mine = {k: slot for (name, k), (_, slot, _) in self._dirty.items() if name == table.name}
        load = self._loaders[table.name]
        for key, raw in table.items():
            if key not in mine and raw is not None:
                yield key, load(raw)
        yield from ((key, slot) for key, slot in mine.items() if slot is not None)

    def hold(self, events: list[EventT[Any]], now: float) -> None:
        """Events applied, to be acked once their changes are written."""
        if events and self._since is None:
            self._since = now
        self._held.extend(events)

    def due(self, now: float) -> bool:
        return self._since is not None and (
            now - self._since >= self.max_age_seconds or len(self._held) >= self.max_events
        )

    def write_back(self, make_current: Callable[[EventT[Any]], None]) -> list[EventT[Any]]:
        """Write every changed slot once, each with its last event made current; return the
        events that may now be acked."""
        for (_, key), (table, slot, event) in self._dirty.items():
            make_current(event)
            if slot is not None:
                table[key] = slot.to_json()
                self.writes += 1
            elif key in table:
                del table[key]
                self.writes += 1
        held, self._held, self._since = self._held, [], None
        self._dirty.clear()
        return held

    def forget(self) -> None:
        """On a rebalance: drop what was held (it is read again from the committed offsets)."""
        self._dirty.clear()
        self._held, self._since = [], None
