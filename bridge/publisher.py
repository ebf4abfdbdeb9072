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
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

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
        """Send a batch; return the entries Kafka did not acknowledge, in order.

        The entries go to aiokafka as one record batch per partition (``send_batch``), not
        one ``send`` each: per event that is 5 µs of work instead of 25 (bench/bridge.py),
        in the process whose one core the Celery receiver needs too.
        """
        sent: list[tuple[list[Entry], Awaitable[Any]]] = []
        unsent: list[Entry] = []
        error: BaseException | None = None
        try:
            groups = await self._by_partition(batch)
        except KafkaError as exc:
            error, groups = exc, {}
            unsent = batch
        for (topic, partition), entries in groups.items():
            for chunk, builder in self._record_batches(entries):
                if error is None:
                    try:
                        future = await self.producer.send_batch(builder, topic, partition=partition)
                    except KafkaError as exc:
                        error = exc
                    else:
                        sent.append((chunk, future))
                        continue
                unsent.extend(chunk)
        self.in_flight = sum(len(chunk) for chunk, _ in sent)
        try:
            results = await self._acknowledged([future for _, future in sent])
        finally:
            self.in_flight = 0
        failed = list(unsent)
        for (chunk, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                error = error or result
                failed.extend(chunk)
                continue
            for entry in chunk:
                if entry.kind == "dlq":
                    self.dead_letters += 1
                else:
                    self.published += 1
        self._state(error)
        position = {id(entry): index for index, entry in enumerate(batch)}
        return sorted(failed, key=lambda entry: position[id(entry)])

    async def _by_partition(self, batch: list[Entry]) -> dict[tuple[str, int], list[Entry]]:
        """Entries by (topic, partition), each group in batch order: the partition aiokafka's
        default partitioner picks for the key (murmur2, as Kafka's Java client)."""
        partitions: dict[str, list[int]] = {}
        groups: dict[tuple[str, int], list[Entry]] = {}
        for entry in batch:
            if entry.topic not in partitions:
                partitions[entry.topic] = sorted(await self.producer.partitions_for(entry.topic))
            choices = partitions[entry.topic]
            partition = choices[_key_hash(entry.key) % len(choices)]
            groups.setdefault((entry.topic, partition), []).append(entry)
        return groups

    def _record_batches(self, entries: list[Entry]) -> list[tuple[list[Entry], BatchBuilder]]:
        """Entries of one partition as aiokafka record batches (a new one when one is full)."""
        batches: list[tuple[list[Entry], BatchBuilder]] = []
        chunk: list[Entry] = []
        builder = self.producer.create_batch()
        for entry in entries:
            if builder.append(key=entry.key, value=entry.value, timestamp=None) is None:
                batches.append((chunk, builder))
                chunk, builder = [], self.producer.create_batch()
                builder.append(key=entry.key, value=entry.value, timestamp=None)
            chunk.append(entry)
        batches.append((chunk, builder))
        return batches

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


@lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    """murmur2 in pure Python costs about 5 µs; a task's events share their key."""
    return int(murmur2(key)) & 0x7FFFFFFF
