"""Buffer -> Kafka: one batch in flight at a time, refused entries retried in order.

aiokafka's idempotent producer (``acks=all``) keeps retrying a batch while Kafka is away, and
the broker discards the duplicates. So a batch in flight is waited for, however long Kafka is
away; past ``stall_seconds`` the wait is reported once. A batch the producer could not deliver
(see ``bridge.producer``: its producer is replaced) goes back to the front of the buffer and is
offered again after a backoff, as does what the producer refused to accept (``send`` raising).
A record the broker refuses for good (larger than the topic takes) is counted as dropped, never
retried. Meanwhile the receiver keeps filling the buffer up to its bound. So every event is
acknowledged by Kafka, in flight, buffered, or counted as dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from bridge.buffer import Entry, EventBuffer
from bridge.producer import KafkaOut
from bridge.receiver import Backoff

log = logging.getLogger("flowguard.bridge")

#: Broker answers that sending the same records again can never change.
REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordListTooLargeError)


class Publisher:
    def __init__(
        self,
        out: KafkaOut,
        buffer: EventBuffer,
        batch_size: int,
        where: str,
        stall_seconds: float,
    ) -> None:
        self.out = out
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
        producer = await self.out.current()
        for index, entry in enumerate(batch):
            try:
                future = await producer.send(entry.topic, entry.value, key=entry.key)
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
        lost: BaseException | None = None
        for (entry, _), result in zip(pending, results, strict=True):
            if isinstance(result, REFUSED_FOR_GOOD):
                lost = lost or result
                self._refused_for_good(entry, result)
            elif isinstance(result, BaseException):
                lost, error = lost or result, error or result
                failed.append(entry)
            elif entry.kind == "dlq":
                self.dead_letters += 1
            else:
                self.published += 1
        if lost is not None:
            await self.out.renew(producer, lost)
        self._state(error)
        return failed + refused

    def _refused_for_good(self, entry: Entry, error: BaseException) -> None:
        self.buffer.drop(entry)
        log.error(
            "Kafka refused a %s record of %d bytes for %s for good (%s: %s); dropped and "
            "counted (the topic's max.message.bytes is below the bridge's max_record_bytes?)",
            entry.kind, len(entry.value), entry.topic, type(error).__name__, error,
        )  # fmt: skip

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
