"""Buffer -> Kafka: one batch in flight at a time, refused entries retried in order.

aiokafka's idempotent producer (``acks=all``) never expires a batch it has accepted: it
retries until the broker acknowledges it, and the broker discards the duplicates. So a batch
in flight is waited for, however long Kafka is away, and never sent a second time (that would
be the one way to publish an event twice); past ``stall_seconds`` the wait is reported once.
What the producer refuses to accept (``send`` raising) goes back to the front of the buffer
and is offered again after a backoff. Meanwhile the receiver keeps filling the buffer up to
its bound. So every event is acknowledged by Kafka, in flight, buffered, or counted as dropped.
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
        self,
        producer: AIOKafkaProducer,
        buffer: EventBuffer,
        batch_size: int,
        where: str,
        stall_seconds: float,
    ) -> None:
        self.producer = producer
        self.buffer = buffer
        self.batch_size = batch_size
        self.where = where
        self.stall_seconds = stall_seconds
        self.in_flight = 0
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
        self.in_flight = len(pending)
        try:
            results = await self._acknowledged([f for _, f in pending])
        finally:
            self.in_flight = 0
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

    async def _acknowledged(self, futures: list[Awaitable[Any]]) -> list[Any]:
        """Every future's result or exception; says once when Kafka is slow to acknowledge."""
        everything = asyncio.gather(*futures, return_exceptions=True)
        try:
            return await asyncio.wait_for(asyncio.shield(everything), self.stall_seconds)
        except TimeoutError:
            self._state(TimeoutError(f"no acknowledgement for {self.stall_seconds:g} s"))
            return await everything

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
                "Kafka at %s does not take events (%s); buffering up to %d, then dropping",
                self.where, reason, self.buffer.bound,
            )  # fmt: skip
        self.kafka_ok, self._problem = False, reason
