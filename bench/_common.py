"""Helpers the benchmarks share to read Kafka: what a run left (bench/fleet.py), a bare baseline.

Each opens its own short-lived client: they run between phases, never on a hot path.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition, errors
from aiokafka.admin import AIOKafkaAdminClient

from flowguard.control.kafka_admin import list_topics, partitions_of

Record = tuple[int, bytes | None, bytes | None]


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every record of ``topic`` to its current end: (partition, key, value)."""
    return [
        (partition, key, value) for partition, key, value, _ in await read_stamped(bootstrap, topic)
    ]


async def read_stamped(
    bootstrap: str, topic: str
) -> list[tuple[int, bytes | None, bytes | None, float]]:
    """Every record of ``topic`` to its current end: (partition, key, value, Kafka timestamp in
    seconds: the producer's clock, or the broker's for a LogAppendTime topic)."""
    parts = (await partitions_of(bootstrap, [topic], 30))[topic]
    tps = [TopicPartition(topic, p) for p in parts]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends, out = await consumer.end_offsets(tps), []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                out += [(m.partition, m.key, m.value, m.timestamp / 1e3) for m in batch]
        return out
    finally:
        await consumer.stop()


async def bare_read(
    bootstrap: str, topic: str, expected: int, decode: Callable[[bytes], object]
) -> tuple[float, float]:
    """A baseline: every partition of ``topic`` read from the start until ``expected`` records,
    each value passed to ``decode``. Returns records/s and CPU µs per record (the process does
    nothing else meanwhile)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    try:
        started, cpu, seen = time.perf_counter(), time.process_time(), 0
        while seen < expected:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for message in batch:
                    decode(message.value or b"")
                    seen += 1
        cpu_us = (time.process_time() - cpu) * 1e6 / seen
        return seen / (time.perf_counter() - started), cpu_us
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> the offset the next record of ``topic`` will get."""
    parts = (await partitions_of(bootstrap, [topic], 30))[topic]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


#: What the broker answers about a consumer group before its coordinator is ready (a group not
#: formed yet, or one loading after a broker start): asked again at the next sample.
COORDINATOR_NOT_YET = (
    errors.GroupCoordinatorNotAvailableError,
    errors.CoordinatorLoadInProgressError,
    errors.NotCoordinatorForGroupError,
)


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Partition -> the group's committed offset on ``topic`` (partitions it never committed
    are absent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except COORDINATOR_NOT_YET:  # a group that has not formed yet has committed nothing
            return {}
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    finally:
        await admin.close()


async def members(bootstrap: str, group: str) -> int:
    """Members of a stable consumer group (0 while it rebalances)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        try:
            [response] = await admin.describe_consumer_groups([group])
        except COORDINATOR_NOT_YET:
            return 0
        _, _, state, _, _, joined, *_ = response.groups[0]
        return len(joined) if state == "Stable" else 0
    finally:
        await admin.close()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


async def topic_load(bootstrap: str, prefix: str) -> dict[str, dict[str, float]]:
    """Per topic of a run (``prefix``: its own and its app's changelogs; not the Faust floor's):
    records and bytes (key + value) received, keys holding a value at the end, value sizes
    (for a table's changelog: its slots' JSON)."""
    out: dict[str, dict[str, float]] = {}
    mine = [t for t in await list_topics(bootstrap, 30) if t.startswith(prefix)]
    for topic in (t for t in mine if not t.startswith(f"{prefix}-floor")):
        records = await read_all(bootstrap, topic)
        sizes = [len(v) for _, _, v in records if v is not None]
        latest = {k: v for _, k, v in records}
        out[topic.removeprefix(prefix)] = {
            "records": len(records),
            "bytes": sum(len(k or b"") + len(v or b"") for _, k, v in records),
            "keys": sum(1 for v in latest.values() if v is not None),
            "value_p50": percentile([float(s) for s in sizes], 0.5) if sizes else 0,
            "value_mean": statistics.fmean(sizes) if sizes else 0,
            "value_max": max(sizes, default=0),
        }
    return out
