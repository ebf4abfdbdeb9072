"""Reading the control plane's topics back, as the workers would."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from topics.registry import WORKFLOWS


async def compacted(bootstrap: str, prefix: str) -> list[tuple[str, bytes | None]]:
    """Every (key, value) on <prefix>.workflows, in order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(WORKFLOWS.name(prefix), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[tuple[str, bytes | None]] = []
        async with asyncio.timeout(10):
            while await consumer.position(tp) < end:
                for message in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                    out.append((message.key.decode(), message.value))
        return out
    finally:
        await consumer.stop()
