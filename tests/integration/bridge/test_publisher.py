"""The publisher and its producer against the real broker, when a delivery fails.

aiokafka's idempotent producer never recovers from a batch that failed after it was numbered:
every later batch of that partition is refused with OUT_OF_ORDER_SEQUENCE_NUMBER. A record
larger than the topic's ``max.message.bytes`` is the one way to make that happen at will; a
broker restart makes it happen by chance (see ``test_bridge_resilience``).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from bridge.buffer import Entry, EventBuffer
from bridge.producer import KafkaOut
from bridge.publisher import Publisher

TOPIC_MAX_BYTES = 2000
TIMEOUT_SECONDS = 20


async def _topic(bootstrap: str, name: str) -> None:
    """A one-partition topic that refuses records over TOPIC_MAX_BYTES; named under the test's
    topic_prefix, it is deleted after the test with the prefix's others (tests/conftest.py)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"max.message.bytes": str(TOPIC_MAX_BYTES)}
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def _read(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            while len(values) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    values.extend(r.value or b"" for r in records)
    finally:
        await consumer.stop()
    return values


def _out(bootstrap: str) -> KafkaOut:
    def make() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
            request_timeout_ms=5000,
        )  # fmt: skip

    return KafkaOut(make, bootstrap, asyncio.Event(), stop_timeout_seconds=5)


def _entry(topic: str, n: int, size: int = 10) -> Entry:
    value = json.dumps({"n": n, "pad": "x" * size}).encode()
    return Entry(topic=topic, key=b"cluster/root", value=value, kind="task.failed")


def test_a_record_the_topic_refuses_is_dropped_and_the_partition_goes_on(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.refused"

    async def scenario() -> tuple[list[bytes], EventBuffer, Publisher, KafkaOut]:
        await _topic(kafka_bootstrap, topic)
        out = _out(kafka_bootstrap)
        assert await out.start()
        buffer = EventBuffer(100, asyncio.get_running_loop())
        publisher = Publisher(out, buffer, 100, kafka_bootstrap, stall_seconds=5)
        try:
            assert await publisher.deliver([_entry(topic, 1)])
            too_big = _entry(topic, 2, size=TOPIC_MAX_BYTES * 2)
            assert await publisher.deliver([too_big])
            # Same partition, after the refusal: aiokafka alone refuses these for good.
            assert await publisher.deliver([_entry(topic, 3), _entry(topic, 4)])
            values = await _read(kafka_bootstrap, topic, 3)
        finally:
            await out.stop()
        return values, buffer, publisher, out

    values, buffer, publisher, out = asyncio.run(scenario())
    assert [json.loads(v)["n"] for v in values] == [1, 3, 4]
    assert publisher.published == 3
    assert buffer.dropped == {"task.failed": 1}
    assert out.renewals == 1
    assert publisher.kafka_ok


def test_delivery_after_a_lost_batch_goes_through_a_new_producer(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.renewed"

    async def scenario() -> tuple[list[bytes], int]:
        await _topic(kafka_bootstrap, topic)
        out = _out(kafka_bootstrap)
        assert await out.start()
        try:
            first = await out.current()
            future = await first.send(topic, b"x" * (TOPIC_MAX_BYTES * 2), key=b"k")
            with pytest.raises(KafkaError) as refused:
                await future
            await out.renew(first, refused.value)
            assert await out.current() is not first
            # Two callers that saw the same failure renew once.
            await out.renew(first, RuntimeError("seen twice"))
            await out.deliver(topic, b"after", b"k")
            values = await _read(kafka_bootstrap, topic, 1)
        finally:
            await out.stop()
        return values, out.renewals

    values, renewals = asyncio.run(scenario())
    assert values == [b"after"]
    assert renewals == 1
