"""The real Kafka broker from deploy/: aiokafka and Faust both work against it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]


async def create(bootstrap: str, *names: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def consume(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[tuple[bytes, bytes, int]]], bool],
    timeout: float,  # noqa: ASYNC109 - a deadline for the whole read, not one call
    gone: Callable[[], bool] = lambda: False,
) -> list[tuple[bytes, bytes, int]]:
    """Read ``topic`` from the start until ``until(records)`` holds or the deadline passes."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[tuple[bytes, bytes, int]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until(records) and loop.time() < deadline and not gone():
            batch = await consumer.getmany(timeout_ms=200)
            for tp_records in batch.values():
                records += [(r.key, r.value, r.partition) for r in tp_records]
    finally:
        await consumer.stop()
    return records


def test_idempotent_produce_and_consume_keep_per_partition_order(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("roundtrip")

    async def scenario() -> list[tuple[bytes, bytes, int]]:
        await create(kafka_bootstrap, topic, partitions=3)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for i in range(300):
                await producer.send(topic, key=f"k{i % 7}".encode(), value=str(i).encode())
            await producer.flush()
        finally:
            await producer.stop()
        return await consume(kafka_bootstrap, topic, until=lambda r: len(r) >= 300, timeout=30)

    records = asyncio.run(scenario())
    assert len(records) == 300
    by_key: dict[bytes, list[int]] = defaultdict(list)
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for key, value, partition in records:
        by_key[key].append(int(value))
        partition_of[key].add(partition)
    assert all(len(p) == 1 for p in partition_of.values()), "one key, one partition"
    for key, values in by_key.items():
        assert values == sorted(values), f"order kept for {key!r}"
        assert len(values) == len(set(values)), "no duplicates"
    assert sum(len(v) for v in by_key.values()) == 300


def test_a_faust_agent_counts_in_a_table_and_writes_a_topic(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    app_id, source, sink = unique("app"), unique("in"), unique("out")
    keys = [f"k{i % 5}" for i in range(50)]

    async def produce() -> None:
        await create(kafka_bootstrap, source, sink)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for key in keys:
                await producer.send(source, key=key.encode(), value=b"x")
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    env = {
        **os.environ,
        "FG_APP_ID": app_id,
        "FG_KAFKA": kafka_bootstrap,
        "FG_IN": source,
        "FG_OUT": sink,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests/integration/faust_counter.py"),
            "worker",
            "-l",
            "warn",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def gone() -> bool:
            return worker.poll() is not None

        out = asyncio.run(
            consume(kafka_bootstrap, sink, until=lambda r: len(r) >= 50, timeout=90, gone=gone)
        )
        changelog = asyncio.run(
            consume(
                kafka_bootstrap,
                f"{app_id}-counts-changelog",
                until=lambda r: _final(r) == _expected(keys),
                timeout=60,
                gone=gone,
            )
        )
    finally:
        worker.terminate()
        try:
            log, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            log, _ = worker.communicate()
    assert len(out) == 50, f"worker output:\n{log[-3000:]}"
    finals = {}
    for key, value, _ in out:
        name, count = value.decode().split("=")
        assert name == key.decode()
        finals[name] = max(finals.get(name, 0), int(count))
    assert finals == _expected(keys)
    assert _final(changelog) == _expected(keys)


def _expected(keys: list[str]) -> dict[str, int]:
    return {k: keys.count(k) for k in set(keys)}


def _final(records: list[tuple[bytes, bytes, int]]) -> dict[str, int]:
    """The table's last value per key, from its changelog (Faust writes JSON keys and values)."""
    final: dict[str, int] = {}
    for key, value, _ in records:
        final[json.loads(key)] = json.loads(value)
    return final
