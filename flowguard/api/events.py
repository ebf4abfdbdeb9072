"""The last N hours of one cluster's events, read back from ``<prefix>.events``.

Test Workflow replays them. Each partition is read from the offset Kafka
finds for the start time (``offsets_for_times``) up to the end offset taken
when the read began, so the read ends even while bridges keep producing.
Partitions are merged by record timestamp, keeping each partition's order
(a retry chain lives in one partition, in arrival order).
"""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from flowguard.errors import KafkaUnavailable
from flowguard.kafka_security import client_options
from topics.registry import EVENTS


@dataclass(frozen=True, slots=True)
class EventWindow:
    lines: list[bytes]
    truncated: bool


async def read_cluster_events(
    bootstrap: str,
    prefix: str,
    *,
    cluster: str,
    since_ms: int,
    max_events: int,
    timeout_seconds: float,
) -> EventWindow:
    """Values of ``cluster``'s events since ``since_ms``, at most ``max_events`` of them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=int(timeout_seconds * 1000),
        **client_options(),
    )
    try:
        async with asyncio.timeout(timeout_seconds):
            await consumer.start()
            return await _read(
                consumer, bootstrap, EVENTS.name(prefix), cluster, since_ms, max_events
            )
    except TimeoutError:
        raise KafkaUnavailable(
            f"reading {EVENTS.name(prefix)} took longer than {timeout_seconds:g}s"
        ) from None
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    """The topic's partitions from the broker (a consumer's own metadata may not list them yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise KafkaUnavailable(f"describing {topic}: error code {described['error_code']}")
    return sorted(p["partition"] for p in described["partitions"])


async def _read(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    topic: str,
    cluster: str,
    since_ms: int,
    max_events: int,
) -> EventWindow:
    tps = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
    if not tps:
        return EventWindow([], False)
    consumer.assign(tps)
    starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    ends = await consumer.end_offsets(tps)
    pending = {}
    for tp in tps:
        found = starts.get(tp)
        if found is not None and found.offset < ends[tp]:
            consumer.seek(tp, found.offset)
            pending[tp] = ends[tp]
    key_prefix = f"{cluster}/".encode()
    per_partition: dict[int, list[tuple[int, int, bytes]]] = {tp.partition: [] for tp in tps}
    count = 0
    while pending and count < max_events:
        batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=10_000)
        for tp, messages in batches.items():
            for message in messages:
                if message.offset >= pending.get(tp, -1):
                    continue
                if message.value is not None and (message.key or b"").startswith(key_prefix):
                    per_partition[tp.partition].append(
                        (message.timestamp, message.offset, message.value)
                    )
                    count += 1
            if tp in pending and await consumer.position(tp) >= pending[tp]:
                del pending[tp]
    merged = heapq.merge(*per_partition.values(), key=lambda item: item[0])
    lines = [value for _, _, value in merged][:max_events]
    return EventWindow(lines, truncated=bool(pending) or count > max_events)
