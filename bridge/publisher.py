"""Buffer -> Kafka: one batch in flight at a time, refused entries retried in order.

aiokafka's idempotent producer (``acks=all``) keeps retrying a batch while Kafka is away, and
the broker discards the duplicates. So a batch in flight is waited for, however long Kafka is
away; past ``stall_seconds`` the wait is reported once. A batch the producer could not deliver
(see ``bridge.producer``: its producer is replaced) goes back to the front of the buffer and is
offered again after a backoff, as does what the producer refused to accept (``send`` raising).
A record the broker refuses for good (larger than the topic takes) is counted as dropped, never
retried. Meanwhile the receiver keeps filling the buffer up to its bound. So every event is
acknowledged by Kafka, in flight, buffered, or counted as dropped.

That holds across shutdown too: cancelled while it sends a batch, the publisher puts what it
had not sent yet back at the front of the buffer and keeps what it had sent as in flight; the
shutdown ``flush`` waits for those acknowledgements first (never sending them twice), then
sends the buffer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from bridge.buffer import Entry, EventBuffer
from bridge.producer import KafkaOut
from bridge.receiver import Backoff
from flowguard.metrics import KAFKA_ERRORS

log = logging.getLogger("flowguard.bridge")

T = TypeVar("T")

#: Broker answers that sending the same records again can never change.
REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordListTooLargeError)


@dataclass(slots=True)
class _Flight:
    """Entries handed to one producer, and their acknowledgements (futures, in order)."""

    producer: AIOKafkaProducer
    entries: list[Entry] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)

    def acknowledged(self) -> asyncio.Future[list[Any]]:
        """Every future's result or exception, in order. Await it only through ``shield``:
        cancelling the gather would cancel the producer's futures."""
        return asyncio.gather(*self.futures, return_exceptions=True)


@dataclass(eq=False)
class Publisher:
    out: KafkaOut
    buffer: EventBuffer
    batch_size: int
    where: str
    stall_seconds: float
    #: Entries taken from the buffer and not yet acknowledged, refused or put back.
    in_flight: int = field(default=0, init=False)
    published: int = field(default=0, init=False)
    dead_letters: int = field(default=0, init=False)
    kafka_ok: bool = field(default=True, init=False)
    _problem: str | None = field(default=None, init=False)
    _interrupted: _Flight | None = field(default=None, init=False)

    async def run(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while True:
            batch = await self.buffer.take(self.batch_size)
            if await self.deliver(batch):
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next())

    async def flush(self) -> None:
        """On shutdown: settle a batch cancelled in flight, then send what is buffered, until
        empty or refused (the caller times it)."""
        if self._interrupted is not None:
            flight = self._interrupted
            results = await asyncio.shield(flight.acknowledged())
            self._interrupted = None
            if not await self._settle(flight, results, [], None):
                return
        while len(self.buffer):
            if not await self.deliver(self.buffer.take_now(self.batch_size)):
                return

    async def deliver(self, batch: list[Entry]) -> bool:
        """Send a batch and wait for Kafka. What it did not acknowledge goes back to the front
        of the buffer, in order; False when anything went back."""
        self.in_flight = len(batch)
        flight: _Flight | None = None
        error: BaseException | None = None
        try:
            flight = _Flight(await self._reported(self.out.current(), "no producer (Kafka away)"))
            # A send can wait too (for the topic's metadata, or room in the producer): with
            # Kafka away that is long, and said like the other waits.
            stalled = asyncio.get_running_loop().call_later(
                self.stall_seconds, self._state,
                TimeoutError(f"no room to send for {self.stall_seconds:g} s"),
            )  # fmt: skip
            try:
                await self._send_all(flight, batch)
            except KafkaError as exc:
                error = exc
            finally:
                stalled.cancel()
            results = await self._reported(flight.acknowledged(), "no acknowledgement")
        except asyncio.CancelledError:
            self._cancelled(batch, flight)
            raise
        return await self._settle(flight, results, batch[len(flight.entries) :], error)

    async def _send_all(self, flight: _Flight, batch: list[Entry]) -> None:
        """Hand the batch to the producer, in order, until one is refused (raised)."""
        for entry in batch:
            future = await flight.producer.send(entry.topic, entry.value, key=entry.key)
            flight.entries.append(entry)
            flight.futures.append(future)

    def _cancelled(self, batch: list[Entry], flight: _Flight | None) -> None:
        """Shutdown mid-batch: the unsent back to the buffer, the sent kept for ``flush``."""
        sent = len(flight.entries) if flight is not None else 0
        self.buffer.put_back(batch[sent:])
        self.in_flight = sent
        self._interrupted = flight if sent else None

    async def _settle(
        self,
        flight: _Flight,
        results: list[Any],
        unsent: list[Entry],
        error: BaseException | None,
    ) -> bool:
        """Count what Kafka took or refused for good; put the rest back; renew after a loss."""
        failed = []
        lost: BaseException | None = None
        for entry, result in zip(flight.entries, results, strict=True):
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
        self.buffer.put_back(failed + unsent)
        self.in_flight = 0
        if lost is not None:
            await self.out.renew(flight.producer, lost)
        self._state(error)
        return not failed and not unsent

    def _refused_for_good(self, entry: Entry, error: BaseException) -> None:
        self.buffer.drop(entry)
        log.error(
            "Kafka refused a %s record of %d bytes for %s for good (%s: %s); dropped and "
            "counted (the topic's max.message.bytes is below the bridge's max_record_bytes?)",
            entry.kind, len(entry.value), entry.topic, type(error).__name__, error,
        )  # fmt: skip

    async def _reported(self, waited: Awaitable[T], what: str) -> T:
        """Wait for ``waited`` however long; past ``stall_seconds`` say once that Kafka does not
        take events (a batch unacknowledged, or a producer renewal waiting for Kafka). Waited
        through ``shield``: cancelling a gather would cancel the producer's futures."""
        future = asyncio.ensure_future(waited)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.stall_seconds)
        except TimeoutError:
            self._state(TimeoutError(f"{what} for {self.stall_seconds:g} s"))
            return await asyncio.shield(future)

    def _state(self, error: BaseException | None) -> None:
        """Log once per change: Kafka refusing, and Kafka back."""
        if error is None:
            if not self.kafka_ok:
                log.warning("Kafka at %s is back; %d events buffered", self.where, len(self.buffer))
            self.kafka_ok, self._problem = True, None
            return
        KAFKA_ERRORS.labels("bridge-publisher").inc()
        reason = f"{type(error).__name__}: {error}"
        if reason != self._problem:
            log.error(
                "Kafka at %s does not take events (%s); buffering up to %d, then dropping",
                self.where, reason, self.buffer.bound,
            )  # fmt: skip
        self.kafka_ok, self._problem = False, reason
