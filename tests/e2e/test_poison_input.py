"""Poison and hostile input on every topic the worker reads: to the DLQ with the reason and a
capped payload, processing goes on, no crash loop; and old events (a new consumer group reads
from the earliest offset) are not acted on.

A real ``flowguard worker`` on the real broker. Random bytes, truncated JSON, a record of
unknown kind, a record with missing fields, a null record and a record over the DLQ's cap go
to each input topic (events, scheduled, triggers, command-results, deliveries); a failure two
hours old goes to events. Then a fresh failure: its webhook is delivered as if nothing
happened, the worker never restarted, and the old failure got no execution.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from flowguard.control.kafka_admin import create_topics
from tests.e2e.conftest import flowguard_worker
from tests.e2e.test_notifications_once import failure
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import TopicReader, produce, save_workflows, tail
from topics.dlq import KEEP_BYTES

BIG = 400_000  # over the DLQ's cap, under Kafka's default 1 MB record


def poison() -> list[tuple[str, bytes | None]]:
    """(why, value): what a broken producer, a bug or an attacker may write."""
    return [
        ("random bytes", os.urandom(64)),
        ("truncated JSON", b'{"kind": "task.failed", "cluster": "prod", "task_id": "t'),
        ("an unknown kind", b'{"kind": "task.exploded", "version": 1}'),
        ("missing fields", b'{"kind": "trigger.matched", "version": 1}'),
        ("a null record", None),
        ("a record over the DLQ's cap", b"[" + b"7," * (BIG // 2) + b"7]"),
    ]


async def write_poison(kafka: str, topics: list[str]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", max_request_size=2**21)
    await producer.start()
    count = 0
    try:
        for topic in topics:
            for _, value in poison():
                await producer.send_and_wait(topic, value, key=b"prod/poison")
                count += 1
    finally:
        await producer.stop()
    return count


@pytest.mark.integration
def test_poison_on_every_input_goes_to_the_dlq_and_old_events_are_not_acted_on(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, request: pytest.FixtureRequest
) -> None:
    kafka, prefix = kafka_bootstrap, topic_prefix
    asyncio.run(create_topics(kafka, prefix, 30))
    with RecordingServer() as hooks:
        tell = {
            "name": "Tell on failures",
            "trigger": {"event": "task.failed"},
            "action": {"type": "webhook", "url": hooks.url_for("/hook")},
        }
        save_workflows(kafka, prefix, [tell])
        worker = flowguard_worker(tmp_path, kafka, prefix).start()
        try:
            worker.wait_for_log("workflows loaded from", timeout=90)
            pid = worker.pid
            inputs = ["events", "scheduled", "triggers", "command-results", "deliveries"]
            written = asyncio.run(write_poison(kafka, [f"{prefix}.{t}" for t in inputs]))
            # A failure two hours old (a new consumer group starts at the earliest offset).
            produce(kafka, f"{prefix}.events", failure("t-old", time.time() - 7200))
            produce(kafka, f"{prefix}.events", failure("t-now", time.time()))

            [delivered] = hooks.wait_for_requests(1, path="/hook", timeout_seconds=60)
            assert delivered.json()["execution"]["task"]["id"] == "t-now"
            dlq = TopicReader(kafka, f"{prefix}.dlq")
            letters = dlq.wait_for(
                lambda rs: rs if len(rs) >= written else None, timeout=30,
                what=f"{written} dead letters",
            )  # fmt: skip
            assert len(letters) == written, [r["reason"] for r in letters]
            for letter in letters:
                assert letter["source"] == "worker"
                assert letter["topic"].removeprefix(f"{prefix}.") in inputs
                assert letter["reason"], letter
                assert len(letter["raw"]) <= KEEP_BYTES
            cut = [r for r in letters if "raw cut to its first" in r["reason"]]
            assert len(cut) == len(inputs), "the big record, once per topic"
            assert {r["topic"] for r in letters} == {f"{prefix}.{t}" for t in inputs}
            # The old failure was seen (its state counts) but not acted on; said in the log.
            wait_until(
                lambda: "not acted on: older than max_trigger_age_seconds" in worker.log(),
                timeout_seconds=10, what="the stale trigger logged",
            )  # fmt: skip
            log = TopicReader(kafka, f"{prefix}.execution-log").poll()
            assert [r["task"]["id"] for r in log if r["seq"] == 0] == ["t-now"]
            assert len(hooks.requests("/hook")) == 1
            assert worker.alive(), "the worker is up"
            assert worker.pid == pid, "the worker never restarted"
        except BaseException:
            print(f"--- worker log:\n{tail(worker.log_path, 80)}")
            raise
        finally:
            worker.kill()
