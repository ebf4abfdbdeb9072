"""bridge/publisher.py: every event taken from the buffer stays counted across a shutdown.

A fake producer hands out acknowledgement futures the test resolves, so "a batch in flight
when SIGTERM cancels the publisher" is a state the test sets up, not a race it hopes for.
The real broker is in tests/integration/bridge/test_publisher.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.buffer import Entry, EventBuffer
from bridge.producer import KafkaOut
from bridge.publisher import Publisher
from tests.helpers import until


class FakeProducer:
    """``send`` returns a future per record; ``hold_at`` makes the n-th send wait for room."""

    def __init__(self, hold_at: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.hold_at = hold_at
        self.room = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        if self.hold_at is not None and len(self.sent) == self.hold_at:
            await self.room.wait()  # aiokafka waits like this when its accumulator is full
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def acknowledge_all(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(None)


def entry(n: int) -> Entry:
    return Entry("fg.events", b"prod/root", str(n).encode(), "task.sent")


def accounted(publisher: Publisher) -> int:
    """What the status record reports: published, plus buffered (in flight included)."""
    return publisher.published + len(publisher.buffer) + publisher.in_flight


async def publisher_with(producer: FakeProducer, events: int) -> Publisher:
    out = KafkaOut(lambda: producer, "kafka:9092", asyncio.Event(), 1)  # type: ignore[arg-type,return-value]
    assert await out.start()
    buffer = EventBuffer(100, asyncio.get_running_loop())
    for n in range(events):
        buffer.put(entry(n))
    return Publisher(out, buffer, 100, "kafka:9092", stall_seconds=5)


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_batch_in_flight_at_shutdown_stays_counted_and_the_flush_waits_for_it() -> None:
    producer = FakeProducer()

    async def scenario() -> tuple[int, int, Publisher]:
        publisher = await publisher_with(producer, 3)
        run = asyncio.create_task(publisher.run())
        await until(lambda: len(producer.futures) == 3, timeout_seconds=5, what="3 sent")
        await cancel(run)  # SIGTERM: the bridge cancels the publisher
        after_cancel = accounted(publisher)
        in_flight = publisher.in_flight
        producer.acknowledge_all()  # Kafka acknowledges what it had
        await publisher.flush()
        return after_cancel, in_flight, publisher

    after_cancel, in_flight, publisher = asyncio.run(scenario())
    assert (after_cancel, in_flight) == (3, 3)
    assert publisher.published == 3
    assert (publisher.in_flight, len(publisher.buffer)) == (0, 0)
    assert producer.sent == [b"0", b"1", b"2"], "the flush waited; it sent nothing twice"


def test_cancelled_mid_batch_the_unsent_go_back_to_the_buffer_in_order() -> None:
    producer = FakeProducer(hold_at=1)

    async def scenario() -> tuple[int, int, int, Publisher]:
        publisher = await publisher_with(producer, 3)
        run = asyncio.create_task(publisher.run())
        await until(lambda: len(producer.sent) == 1, timeout_seconds=5, what="1 sent")
        await cancel(run)  # while the second send waits for room
        counts = accounted(publisher), publisher.in_flight, len(publisher.buffer)
        producer.room.set()
        flushing = asyncio.create_task(publisher.flush())
        # The flush first waits for the one in flight, then sends the two put back.
        await until(lambda: len(producer.sent) == 1 and not flushing.done(), timeout_seconds=5,
                    what="the flush waiting for the record in flight")  # fmt: skip
        producer.acknowledge_all()
        await until(lambda: len(producer.futures) == 3, timeout_seconds=5, what="3 sent")
        producer.acknowledge_all()
        await flushing
        return *counts, publisher

    total, in_flight, buffered, publisher = asyncio.run(scenario())
    assert (total, in_flight, buffered) == (3, 1, 2)
    assert publisher.published == 3
    assert producer.sent == [b"0", b"1", b"2"]


def test_a_delivery_refused_during_the_flush_goes_back_to_the_buffer() -> None:
    """Kafka went away with the batch in flight: after the flush it is buffered, still counted."""
    producer = FakeProducer()

    async def scenario() -> Publisher:
        publisher = await publisher_with(producer, 2)
        run = asyncio.create_task(publisher.run())
        await until(lambda: len(producer.futures) == 2, timeout_seconds=5, what="2 sent")
        await cancel(run)
        producer.futures[0].set_result(None)
        producer.futures[1].set_exception(TimeoutError("no leader"))
        await publisher.flush()
        return publisher

    publisher = asyncio.run(scenario())
    assert publisher.published == 1
    assert [e.value for e in publisher.buffer.take_now(10)] == [b"1"]
    assert publisher.in_flight == 0


def test_waiting_on_a_producer_renewal_says_kafka_does_not_take_events() -> None:
    """A renewal started by another sender (the status loop) waits for Kafka to come back;
    the publisher waiting on it is not ready, and says so, as with an unacknowledged batch."""
    producer = FakeProducer()

    async def scenario() -> tuple[str | None, bool]:
        publisher = await publisher_with(producer, 2)
        publisher.stall_seconds = 0.05
        kafka_back = asyncio.Event()
        publisher.out._renewal = asyncio.create_task(kafka_back.wait())  # type: ignore[assignment]
        run = asyncio.create_task(publisher.run())
        await until(lambda: not publisher.kafka_ok, timeout_seconds=5, what="not ready")
        problem = publisher._problem
        kafka_back.set()
        publisher.out._renewal = None
        await until(lambda: len(producer.futures) == 2, timeout_seconds=5, what="2 sent")
        producer.acknowledge_all()
        await until(lambda: publisher.published == 2, timeout_seconds=5, what="2 published")
        await cancel(run)
        return problem, publisher.kafka_ok

    problem, ok_after = asyncio.run(scenario())
    assert problem is not None
    assert "no producer" in problem
    assert ok_after
