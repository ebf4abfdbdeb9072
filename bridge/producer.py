"""The bridge's one Kafka producer: started with backoff, renewed after a delivery failure.

aiokafka's idempotent producer numbers each partition's batches, and the broker takes only
the next number. A batch that fails after it was numbered leaves a gap that aiokafka never
closes: the broker answers ``OUT_OF_ORDER_SEQUENCE_NUMBER`` to every later batch of that
partition, for good (aio-libs/aiokafka#1017). That happens on every broker restart that
outlasts the request timeout (aiokafka fails an old batch when its partition has a moment
without a leader) and on any record the broker refuses. The Java client bumps its epoch in
that case (KIP-360); aiokafka cannot, so a failed delivery makes us start a new producer,
which gets a new producer id and numbers from zero.

What the failed batch held is sent again by the new producer. If the broker had written it
before the failure, it is in Kafka twice; the engine drops the repeat (same event, same
timestamp). A delivery that only waits (Kafka away) is never a failure: the old producer
keeps retrying it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bridge.receiver import Backoff

log = logging.getLogger("flowguard.bridge")


def describe(error: BaseException) -> str:
    """``Type: text`` for a log line (aiokafka's errors already start with their type)."""
    text, kind = str(error), type(error).__name__
    return text if text.startswith(kind) else f"{kind}: {text}"


class KafkaOut:
    """Owns the current producer and the retired ones until they have stopped."""

    def __init__(
        self,
        make: Callable[[], AIOKafkaProducer],
        where: str,
        stopping: asyncio.Event,
        stop_timeout_seconds: float,
    ) -> None:
        self._make = make
        self.where = where
        self._stopping = stopping
        self._stop_timeout = stop_timeout_seconds
        self._producer = make()
        self._renewal: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.renewals = 0

    async def current(self) -> AIOKafkaProducer:
        """The producer to send with, once a renewal in progress has started it."""
        if self._renewal is not None:
            await asyncio.shield(self._renewal)
        return self._producer

    async def start(self) -> bool:
        """Start the producer, waiting for Kafka and saying so once. False: stopped first."""
        backoff, said = Backoff(0.5, 10.0), False
        while True:
            try:
                await self._producer.start()
            except KafkaError as exc:
                if not said:
                    log.error("Kafka at %s unreachable (%s); retrying with backoff",
                              self.where, describe(exc))  # fmt: skip
                    said = True
                with contextlib.suppress(Exception):
                    await self._producer.stop()
                self._producer = self._make()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff.next())
                if self._stopping.is_set():
                    return False
                continue
            if said:
                log.warning("Kafka at %s answers", self.where)
            return True

    async def renew(self, failed: AIOKafkaProducer, error: BaseException) -> None:
        """After ``failed`` lost a delivery: a new producer, once however many callers ask."""
        if failed is self._producer and self._renewal is None:
            self._renewal = asyncio.create_task(self._renew(error), name="producer-renewal")
        if self._renewal is not None:
            # Shielded: a caller that stops waiting (a status send timing out) must not
            # cancel the renewal the other callers wait on.
            await asyncio.shield(self._renewal)

    async def _renew(self, error: BaseException) -> None:
        try:
            self.renewals += 1
            log.warning(
                "Kafka producer lost a delivery (%s: %s); starting a new one (new producer "
                "id) and sending its events again", type(error).__name__, error,
            )  # fmt: skip
            old, self._producer = self._producer, self._make()
            retiring = asyncio.create_task(self._retire(old), name="producer-retire")
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
            await self.start()
        finally:
            self._renewal = None

    async def _retire(self, old: AIOKafkaProducer) -> None:
        """Let the old producer settle what it still holds (other callers wait on it)."""
        try:
            await old.stop()
        except KafkaError as exc:
            log.warning("the replaced Kafka producer stopped with %s: %s", type(exc).__name__, exc)

    async def send_once(self, topic: str, value: bytes, key: bytes) -> None:
        """Send and wait for the acknowledgement; a failed delivery renews, then raises."""
        producer = await self.current()
        future = await producer.send(topic, value, key=key)
        try:
            await future
        except KafkaError as exc:
            await self.renew(producer, exc)
            raise

    async def deliver(self, topic: str, value: bytes, key: bytes) -> None:
        """Send until Kafka acknowledges (for records that must not be lost: command results)."""
        backoff, said = Backoff(0.5, 10.0), False
        while True:
            try:
                await self.send_once(topic, value, key)
                return
            except KafkaError as exc:
                if not said:
                    log.warning("a record for %s waits for Kafka (%s)", topic, type(exc).__name__)
                    said = True
                await asyncio.sleep(backoff.next())

    async def stop(self) -> None:
        """Stop the current producer and the retired ones, each within the stop timeout."""
        if self._renewal is not None:
            self._renewal.cancel()
            await asyncio.gather(self._renewal, return_exceptions=True)
        with contextlib.suppress(TimeoutError, KafkaError):
            await asyncio.wait_for(self._producer.stop(), self._stop_timeout)
        retiring = list(self._retiring)
        if retiring:
            _, late = await asyncio.wait(retiring, timeout=self._stop_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*retiring, return_exceptions=True)
