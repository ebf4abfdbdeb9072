"""The bridge against a real Celery worker on a real Redis, publishing to real Kafka."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from flowguard.kafka_admin import create_topics
from tests.processes import (
    TopicReader,
    bridge_process,
    celery_worker,
    private_redis,
    start_worker,
)
from topics.events import EVENT_ADAPTER

CLUSTER = "test-cluster"
TERMINAL = {"task.succeeded", "task.failed"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    with private_redis(tmp_path) as url:
        yield url


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    asyncio.run(create_topics(kafka_bootstrap, topic_prefix, 30))
    return topic_prefix


def client(broker: str) -> Celery:
    app = Celery("test-client", broker=broker)
    app.conf.task_send_sent_event = True
    return app


def by_task(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("kind", "").startswith("task."):
            tasks[event["task_id"]].append(event)
    return tasks


def test_every_task_event_arrives_in_order_keyed_by_its_chain(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = start_worker(celery_worker(tmp_path, broker, queues="celery,email,priority-high"))
    dump = tmp_path / "dump.jsonl"
    bridge = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=kafka_bootstrap, prefix=topics,
        dump=str(dump),
    ).start()  # fmt: skip
    try:
        bridge.wait_for_log("consuming Celery events")
        bridge.wait_for_log("snapshot:")
        app = client(broker)
        sent = {
            "ok": app.send_task("demo.tasks.add", (2, 3), task_id="t-ok"),
            "fail": app.send_task("demo.tasks.always_fails", ("c-42",), task_id="t-fail"),
            "retry": app.send_task("demo.tasks.retry_then_succeed", (7,), task_id="t-retry"),
            "email": app.send_task(
                "myapp.tasks.send_email",
                ("ops@example.com", "hello"),
                {"priority": "low"},
                queue="email",
                task_id="t-email",
            ),
            "pay": app.send_task(
                "payments.process_payment", (100, "4242"), queue="priority-high", task_id="t-pay"
            ),
            "slow": app.send_task("demo.tasks.slow", (1.5,), task_id="t-slow"),
        }
        ids = {result.id for result in sent.values()}
        reader = TopicReader(kafka_bootstrap, f"{topics}.events")

        def all_finished(events: list[dict[str, Any]]) -> bool:
            tasks = by_task(events)
            return all(tasks[i] and tasks[i][-1]["kind"] in TERMINAL for i in ids)

        reader.wait_for(all_finished, timeout=60, what="every task's last event in Kafka")
    finally:
        bridge.stop(signal.SIGTERM)
        worker.stop()
    assert bridge.proc is not None
    assert bridge.proc.returncode == 0, bridge.log()[-3000:]

    tasks = by_task(reader.poll())
    kinds = {task_id: [e["kind"] for e in tasks[task_id]] for task_id in ids}
    # task-sent comes from the client, the rest from the worker: the worker's come in their
    # order, and the client's may arrive anywhere among them (the sender publishes its event
    # after the message). Kafka keeps the order the bridge received them in (checked below).
    worker_side = {i: [k for k in kinds[i] if k != "task.sent"] for i in ids}
    for task_id, last in (("t-ok", "task.succeeded"), ("t-fail", "task.failed"),
                          ("t-slow", "task.succeeded")):  # fmt: skip
        assert kinds[task_id].count("task.sent") == 1
        assert worker_side[task_id] == ["task.received", "task.started", last]
    # Celery's own retry: the same task id, retried, then received and run again. Its events
    # come from two processes (the worker and its pool child), so they arrive in no causal
    # order (tests/data/streams/README.md): the bridge keeps the order they arrived in.
    assert sorted(kinds["t-retry"]) == sorted([
        "task.sent", "task.received", "task.started", "task.retried",
        "task.sent", "task.received", "task.started", "task.succeeded",
    ])  # fmt: skip
    arrived: dict[str, list[str]] = defaultdict(list)
    for line in dump.read_text().splitlines():
        raw = json.loads(line)
        if raw.get("uuid") in ids:
            arrived[raw["uuid"]].append("task." + raw["type"].removeprefix("task-"))
    assert {i: arrived[i] for i in ids} == kinds

    # Every record is a valid event of this cluster, with Celery's fields.
    for task_id in ids:
        for event in tasks[task_id]:
            EVENT_ADAPTER.validate_python(event)
            assert event["cluster"] == CLUSTER
            assert event["task_id"] == task_id
    email = {e["kind"]: e for e in tasks["t-email"]}
    assert email["task.sent"]["queue"] == "email"
    assert email["task.received"]["name"] == "myapp.tasks.send_email"
    assert email["task.received"]["args"] == "('ops@example.com', 'hello')"
    assert email["task.received"]["kwargs"] == "{'priority': 'low'}"
    assert email["task.failed"]["exception"] == "SMTPException('554 rejected: ops@example.com')"
    assert email["task.failed"]["hostname"] == "w1@flowguard"
    assert {e["kind"]: e for e in tasks["t-pay"]}["task.sent"]["queue"] == "priority-high"

    # Keyed by cluster/root id: all of a chain's events in one partition, in event order.
    placed: dict[str, set[tuple[bytes | None, int]]] = defaultdict(set)
    for key, value, partition, _offset in reader.records:
        if value.get("task_id") in ids:
            placed[value["task_id"]].add((key, partition))
    for task_id in ids:
        [(key, _partition)] = placed[task_id]
        assert key == f"{CLUSTER}/{task_id}".encode()

    # Worker heartbeats (the worker was online before the bridge) and bridge status records.
    kinds_seen = {value.get("kind") for _, value, _, _ in reader.records}
    assert {"worker.heartbeat", "bridge.status"} <= kinds_seen
