"""The bridge against a real Celery worker on a real Redis, publishing to real Kafka."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from tests.processes import (
    TEST_COMMAND_KEY,
    TopicReader,
    bridge_process,
    celery_client,
    celery_worker,
    private_redis,
    produce,
    start_worker,
)
from topics.commands import RevokeCommand
from topics.events import EVENT_ADAPTER
from topics.record import iso
from topics.signing import CommandKey, sign

CLUSTER = "test-cluster"
TERMINAL = {"task.succeeded", "task.failed"}


def send_revoke(kafka: str, topics: str, command_id: str) -> None:
    command = RevokeCommand(
        command_id=command_id, cluster=CLUSTER, issued_at=iso(time.time()) or "", task_id="t-x"
    )
    signed = sign(command, CommandKey.parse(TEST_COMMAND_KEY))
    produce(kafka, f"{topics}.commands", [(CLUSTER.encode(), signed.model_dump_json().encode())])


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
        app = celery_client(broker)
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


def statuses_of(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """bridge.status records by bridge id, in the order Kafka has them (one key each)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("kind") == "bridge.status":
            found[event["bridge_id"]].append(event)
    return found


def test_the_heartbeat_repeats_at_its_interval_while_the_bridge_runs(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    bridge = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=kafka_bootstrap, prefix=topics,
        status_interval_seconds="0.5",
    ).start()  # fmt: skip
    reader = TopicReader(kafka_bootstrap, f"{topics}.events")
    try:
        bridge.wait_for_log("consuming Celery events")
        running = reader.wait_for(
            lambda v: [s for s in statuses_of(v).values() if len(s) >= 5],
            timeout=30, what="5 bridge.status records of one bridge",
        )  # fmt: skip
        assert bridge.alive(), "the records came while it runs, not at shutdown"
    finally:
        bridge.stop(signal.SIGTERM)
    [records] = running
    assert {r["interval_seconds"] for r in records} == {0.5}
    assert {r["cluster"] for r in records} == {CLUSTER}
    gaps = [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(records)]
    # The first comes at once; the next ones an interval apart (plus the send's own time).
    assert all(0.45 <= gap < 5 for gap in gaps), gaps
    assert records[-1]["celery_connected"]
    assert records[-1]["kafka_connected"]


def test_a_worker_started_without_events_sends_them_once_the_bridge_connects(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    """No -E and worker_send_task_events off: only the bridge's enable_events turns them on."""
    worker = start_worker(celery_worker(tmp_path, broker, task_events=False))
    bridge = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=kafka_bootstrap, prefix=topics
    ).start()
    reader = TopicReader(kafka_bootstrap, f"{topics}.events")
    try:
        bridge.wait_for_log("snapshot:")  # enable_events came first, then the snapshot
        celery_client(broker).send_task("demo.tasks.add", (2, 3), task_id="t-quiet")

        def finished(values: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            events = by_task(values)["t-quiet"]
            return events if any(e["kind"] == "task.succeeded" for e in events) else None

        events = reader.wait_for(finished, timeout=60, what="t-quiet's success in Kafka")
    finally:
        bridge.stop(signal.SIGTERM)
        worker.stop()
    assert "task events: OFF" in worker.log(), "the worker must start with events off"
    worker_side = [e["kind"] for e in events if e["kind"] != "task.sent"]
    assert worker_side == ["task.received", "task.started", "task.succeeded"]


def test_the_broker_password_is_never_in_the_bridge_log(tmp_path: Path, kafka_bootstrap: str,
                                                        topics: str) -> None:  # fmt: skip
    """Everything the bridge logs in a run (DEBUG): connect, snapshot, events, a command, the
    broker and the dedup Redis going away. The URL is given with --broker."""
    password = "pw-Zq81-never-logged"
    with private_redis(tmp_path, password=password) as url:
        assert password in url
        worker = start_worker(celery_worker(tmp_path, url))
        bridge = bridge_process(
            tmp_path, cluster=CLUSTER, kafka=kafka_bootstrap, prefix=topics,
            # The variable points elsewhere: only the flag makes this bridge work.
            broker="redis://127.0.0.1:1/0", flags=("--broker", url),
        ).start()  # fmt: skip
        reader = TopicReader(kafka_bootstrap, f"{topics}.events")
        try:
            bridge.wait_for_log("snapshot:")
            celery_client(url).send_task("demo.tasks.always_fails", ("c-1",), task_id="t-secret")
            reader.wait_for(
                lambda v: any(e["kind"] == "task.failed" for e in by_task(v)["t-secret"]),
                timeout=60, what="t-secret's failure in Kafka",
            )  # fmt: skip
            worker.stop()
            redis.Redis.from_url(url).shutdown(nosave=True)
            bridge.wait_for_log("unreachable", timeout=30)
            send_revoke(kafka_bootstrap, topics, "c-while-down")
            bridge.wait_for_log("dedup Redis", timeout=30)
        finally:
            bridge.stop(signal.SIGTERM)
            worker.stop()
    log = bridge.log()
    assert "redis://:**@127.0.0.1:" in log, "the masked URL is what it logs"
    assert password not in log
    # (Task tracebacks appear inside logged event payloads at DEBUG, never as lines of their own.)
    assert not [line for line in log.splitlines() if line.startswith("Traceback")]
