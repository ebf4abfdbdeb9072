"""From a raw Celery event to a Kafka record in the buffer (runs in the receiver's thread).

Keys: a task event is keyed ``cluster/root_id`` so that a whole retry chain lands in one
partition. Celery sends ``root_id`` only on ``task-sent``/``task-received``; the intake
remembers each task's root from those (a bounded LRU) and keys the task's later events
(started, failed, ...) by it. A task first seen after a bridge restart is keyed by its own
id until a received event names its root.

Two threads call in: Celery's receiver (``on_event``) and the snapshot thread after each
connect (``on_snapshot``). The ``--dump`` file has a lock of its own, so their lines never
interleave, and is closed under it (a receiver thread slow to stop writes nothing after).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import KW_ONLY, dataclass, field
from typing import IO, Any

from bridge.buffer import Entry, EventBuffer
from flowguard.celery_wire.events import translate
from flowguard.errors import EventInvalid
from topics.dlq import DeadLetter
from topics.events import Event, TaskSent, TaskSnapshot
from topics.keys import RootMemory, record_key
from topics.record import iso

log = logging.getLogger("flowguard.bridge")


def encode(event: Event | DeadLetter) -> bytes:
    return event.__pydantic_serializer__.to_json(event)


@dataclass(eq=False)
class Intake:
    """Translates, keys and buffers events; counts what it received and refused."""

    cluster: str
    events_topic: str
    dlq_topic: str
    buffer: EventBuffer
    dump: IO[str] | None = None
    _: KW_ONLY
    max_record_bytes: int = 1_000_000
    roots: RootMemory = field(default_factory=RootMemory, init=False)
    received: int = field(default=0, init=False)
    invalid: int = field(default=0, init=False)
    ignored: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _dump_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def on_event(self, raw: dict[str, Any]) -> None:
        """Celery's receiver handler: one raw event dict."""
        if self.dump is not None:
            self.write_dump(json.dumps(raw, default=repr))
        try:
            event = translate(raw, self.cluster)
        except EventInvalid as exc:
            self.on_invalid(str(exc), raw)
            return
        if event is None:
            with self._lock:
                self.ignored += 1
            return
        self._add(event)

    def on_snapshot(self, events: list[TaskSnapshot]) -> None:
        """Tasks seen by ``inspect()`` on (re)connect, published as state records."""
        for event in events:
            if self.dump is not None:
                self.write_dump(event.model_dump_json())
            self._add(event)

    def on_sent(self, event: TaskSent) -> None:
        """The bridge's own ``task.sent`` for a retry it sends: published and dumped in line
        with Celery's events (``--dump``: replay learns queues from it)."""
        if self.dump is not None:
            self.write_dump(event.model_dump_json())
        self._add(event)

    def write_dump(self, line: str) -> None:
        with self._dump_lock:
            if self.dump is not None:
                self.dump.write(line + "\n")

    def close_dump(self) -> None:
        """Close the ``--dump`` file; later events are not written (shutdown)."""
        with self._dump_lock:
            dump, self.dump = self.dump, None
            if dump is not None:
                dump.close()

    def _add(self, event: Event) -> None:
        value = encode(event)
        with self._lock:
            key = record_key(event, self.roots)  # learns the root even if refused below
        if len(value) > self.max_record_bytes:
            # Kafka would refuse it for good; retried, it would hold up the stream behind it.
            self._dead_letter(
                f"{event.kind} of {len(value)} bytes is larger than Kafka takes "
                f"(max_record_bytes {self.max_record_bytes})",
                value.decode(errors="replace"),
            )
            return
        with self._lock:
            self.received += 1
        self.buffer.put(Entry(self.events_topic, key.encode(), value, event.kind))

    def on_invalid(self, reason: str, raw: Any) -> None:
        """An event that cannot be used: to the DLQ with the reason and the raw event."""
        self._dead_letter(reason, json.dumps(raw, default=repr))

    def _dead_letter(self, reason: str, text: str) -> None:
        # A JSON-escaped character takes at most 6 bytes: an 8th of the limit always fits.
        keep = self.max_record_bytes // 8
        if len(text) > keep:
            reason = f"{reason}; raw cut to its first {keep} of {len(text)} characters"
            text = text[:keep]
        letter = DeadLetter(
            source="bridge",
            cluster=self.cluster,
            reason=reason,
            raw=text,
            raw_base64=None,
            at=iso(time.time()) or "",
        )
        with self._lock:
            self.invalid += 1
        log.warning("event refused (sent to %s): %s", self.dlq_topic, reason)
        self.buffer.put(Entry(self.dlq_topic, self.cluster.encode(), encode(letter), "dlq"))
