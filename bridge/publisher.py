"""Buffer -> Kafka: one batch in flight at a time, refused entries retried in order.

aiokafka's idempotent producer (``acks=all``) retries what it can by itself. What it gives
up on (the broker gone for longer than ``request_timeout``) comes back here: those entries
go back to the front of the buffer and are sent again after a backoff, while the receiver
keeps filling the buffer up to its bound. So every event is either acknowledged by Kafka,
waiting in the buffer, or counted as dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bridge.buffer import Entry, EventBuffer
from bridge.receiver import Backoff

log = logging.getLogger("flowguard.bridge")


class Publisher:
    def __init__(
        self, producer: AIOKafkaProducer, buffer: EventBuffer, batch_size: int, where: str
    ) -> None:
        self.producer = producer
        self.buffer = buffer
        self.batch_size = batch_size
        self.where = where
        self.published = 0
        self.dead_letters = 0
        self.kafka_ok = True
        self._problem: str | None = None

    async def run(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while True:
            batch = await self.buffer.take(self.batch_size)
            refused = await self.deliver(batch)
            if refused:
                self.buffer.put_back(refused)
                await asyncio.sleep(backoff.next())
            else:
                backoff.reset()

    async def flush(self) -> None:
        """On shutdown: send what is buffered, until empty or refused (the caller times it)."""
        while len(self.buffer):
            batch = self.buffer.take_now(self.batch_size)
            refused = await self.deliver(batch)
            if refused:
                self.buffer.put_back(refused)
                return

    async def deliver(self, batch: list[Entry]) -> list[Entry]:
        """Send a batch; return the entries Kafka did not acknowledge, in order."""
        pending: list[tuple[Entry, Awaitable[Any]]] = []
        refused: list[Entry] = []
        error: BaseException | None = None
        for index, entry in enumerate(batch):
            try:
                future = await self.producer.send(entry.topic, entry.value, key=entry.key)
            except KafkaError as exc:
                error, refused = exc, batch[index:]
                break
            pending.append((entry, future))
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        failed = []
        for (entry, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                error = error or result
                failed.append(entry)
            elif entry.kind == "dlq":
                self.dead_letters += 1
            else:
                self.published += 1
        self._state(error)
        return failed + refused

    def _state(self, error: BaseException | None) -> None:
        """Log once per change: Kafka refusing, and Kafka back."""
        if error is None:
            if not self.kafka_ok:
                log.warning("Kafka at %s is back; %d events buffered", self.where, len(self.buffer))
            self.kafka_ok, self._problem = True, None
            return
        reason = f"{type(error).__name__}: {error}"
        if reason != self._problem:
            log.error(
                "Kafka at %s refuses events (%s); buffering up to %d, then dropping",
                self.where, reason, self.buffer.bound,
            )  # fmt: skip
        self.kafka_ok, self._problem = False, reason
