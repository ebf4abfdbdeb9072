"""The stack from deploy/: aiokafka, Faust and ``flowguard doctor`` against the real broker,
and the Redis that Celery and the bridge will use.

Kafka 4 dropped old protocol versions (KIP-896): these tests are what says our client stack
(aiokafka 0.14, faust-streaming 0.15) still speaks to it, idempotence and changelogs included.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from click.testing import CliRunner

from flowguard.cli import main as cli
from flowguard.control.kafka_admin import create_topics
from flowguard.settings import get_settings
from tests.helpers import until
from topics.registry import ALL_TOPICS

FAUST_APP = Path(__file__).with_name("faust_counter.py")
REQUEST_TIMEOUT_SECONDS = 15


class Record(NamedTuple):
    key: bytes
    value: bytes
    partition: int
    offset: int


async def create(bootstrap: str, *names: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            await admin.start()
            await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, items: list[tuple[str, str]]) -> list[Record]:
    """Send ``(key, value)`` pairs idempotently with acks=all; returns where each one landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=REQUEST_TIMEOUT_SECONDS * 1000,
    )
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS * 2):
            await producer.start()
            pending = [
                await producer.send(topic, key=k.encode(), value=v.encode()) for k, v in items
            ]
            sent = await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return [
        Record(k.encode(), v.encode(), meta.partition, meta.offset)
        for (k, v), meta in zip(items, sent, strict=True)
    ]


async def read(
    bootstrap: str,
    topic: str,
    *,
    enough: Callable[[list[Record]], bool],
    timeout_seconds: float,
    gone: Callable[[], bool] = lambda: False,
) -> list[Record]:
    """Read ``topic`` from the start until ``enough(records)``; fail at the deadline.

    ``gone`` stops the wait early (the process meant to write the topic died).
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT_SECONDS * 1000,
    )
    records: list[Record] = []

    async def more() -> bool:
        batches = await consumer.getmany(timeout_ms=200)
        for batch in batches.values():
            records.extend(Record(r.key, r.value, r.partition, r.offset) for r in batch)
        return enough(records) or gone()

    try:
        await asyncio.wait_for(consumer.start(), REQUEST_TIMEOUT_SECONDS)
        await until(
            more, timeout_seconds=timeout_seconds, what=f"records on {topic}", interval_seconds=0
        )
    finally:
        await consumer.stop()
    return records


def test_idempotent_produce_and_consume_keep_per_partition_order(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("roundtrip")
    items = [(f"key-{i % 13}", f"value-{i}") for i in range(400)]

    async def scenario() -> tuple[list[Record], list[Record]]:
        await create(kafka_bootstrap, topic, partitions=3)
        sent = await produce(kafka_bootstrap, topic, items)
        got = await read(
            kafka_bootstrap, topic, enough=lambda r: len(r) >= len(items), timeout_seconds=30
        )
        return sent, got

    sent, got = asyncio.run(scenario())
    assert len(got) == len(items), "every message once: no loss, no duplicate"
    assert sorted(got, key=lambda r: (r.partition, r.offset)) == sorted(
        sent, key=lambda r: (r.partition, r.offset)
    ), "each record where the producer was told it landed, with its key and value"
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for record in sent:
        partitions_of[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions_of.values()), "one key, one partition"
    assert len({r.partition for r in sent}) > 1, "the keys spread over the partitions"
    for partition in {r.partition for r in got}:
        in_partition = [r for r in got if r.partition == partition]
        produced = [r for r in sent if r.partition == partition]
        assert [r.value for r in in_partition] == [r.value for r in produced], "send order kept"


@pytest.fixture
def faust_worker(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path
) -> Iterator[tuple[dict[str, str], subprocess.Popen[bytes], Path]]:
    """A Faust worker (tests/integration/faust_counter.py) with an app id of this test's own.

    A subprocess: Faust owns its event loop and signal handlers. SIGTERM stops it cleanly;
    SIGKILL only if it has not stopped 30 s later. Its data dir and log stay in tmp_path.
    """
    names = {"FG_APP_ID": unique("app"), "FG_IN": unique("in"), "FG_OUT": unique("out")}
    asyncio.run(create(kafka_bootstrap, names["FG_IN"], names["FG_OUT"]))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, str(FAUST_APP), "worker", "--loglevel", "warn"],
            env={**os.environ, **names, "FG_KAFKA": kafka_bootstrap},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield names, worker, log
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def test_a_faust_agent_counts_in_a_table_and_writes_a_topic(
    kafka_bootstrap: str,
    faust_worker: tuple[dict[str, str], subprocess.Popen[bytes], Path],
) -> None:
    names, worker, log = faust_worker
    keys = [f"k{i % 5}" for i in range(60)]
    expected = {k: keys.count(k) for k in set(keys)}
    changelog = f"{names['FG_APP_ID']}-counts-changelog"

    def gone() -> bool:
        return worker.poll() is not None

    async def scenario() -> tuple[list[Record], list[Record]]:
        await produce(kafka_bootstrap, names["FG_IN"], [(k, "x") for k in keys])
        out = await read(
            kafka_bootstrap,
            names["FG_OUT"],
            enough=lambda r: len(r) >= len(keys),
            timeout_seconds=90,
            gone=gone,
        )
        table = await read(
            kafka_bootstrap,
            changelog,
            enough=lambda r: last_values(r) == expected,
            timeout_seconds=30,
            gone=gone,
        )
        return out, table

    try:
        out, table = asyncio.run(scenario())
    except AssertionError as exc:
        raise AssertionError(f"{exc}; worker log:\n{log.read_text()[-3000:]}") from None
    assert not gone(), f"the worker died:\n{log.read_text()[-3000:]}"
    assert len(out) == len(keys)
    counts: dict[str, list[int]] = defaultdict(list)
    for record in out:
        name, count = record.value.decode().split("=")
        assert name == record.key.decode()
        counts[name].append(int(count))
    assert counts == {k: list(range(1, n + 1)) for k, n in expected.items()}, "1, 2, ... per key"
    assert last_values(table) == expected, "the table's changelog holds the final counts"


def last_values(records: list[Record]) -> dict[str, int]:
    """A table's last value per key, from its changelog (Faust writes JSON keys and values)."""
    return {json.loads(r.key): json.loads(r.value) for r in records}


def test_doctor_passes_against_the_broker(
    kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("FLOWGUARD_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("FLOWGUARD_KAFKA_TIMEOUT_SECONDS", "10")

    def doctor() -> list[str]:
        get_settings.cache_clear()
        result = CliRunner().invoke(cli, ["doctor"])
        get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    before = doctor()
    assert (
        before[0] == f"ok   configuration: kafka {kafka_bootstrap}, topic prefix {topic_prefix!r}"
    )
    assert before[1].startswith(f"ok   kafka: 1 broker(s) answer at {kafka_bootstrap}")
    assert before[2].startswith(f"warn topics: 0 of {len(ALL_TOPICS)} exist; missing: ")

    created = asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 15, partitions=1))
    assert sorted(created) == sorted(spec.name(topic_prefix) for spec in ALL_TOPICS)
    assert asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 15, partitions=1)) == []

    after = doctor()
    assert after[2].startswith(f"ok   topics: all {len(ALL_TOPICS)} exist")


def test_redis_answers_and_keeps_nothing_on_disk(
    redis_url: str, unique: Callable[[str], str]
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        key = unique("key")
        assert client.set(key, "v", ex=60)
        assert client.get(key) == b"v"
        if "127.0.0.1" in redis_url:  # ours, from deploy/redis/start: no persistence configured
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()
