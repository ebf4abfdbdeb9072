"""The bridge when things break: Kafka down for 10 s, the bridge itself SIGKILLed."""

from __future__ import annotations

import ast
import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flowguard.control.kafka_admin import create_topics
from flowguard.demo.celery_app import recorded_calls
from tests.helpers import wait_until
from tests.processes import (
    REPO,
    Process,
    TopicReader,
    bridge_process,
    celery_client,
    celery_worker,
    free_port,
    start_worker,
)

CLUSTER = "test-cluster"
OUTAGE_SECONDS = 10.0
#: Events Celery sends per successful task: sent (client), received, started, succeeded.
EVENTS_PER_TASK = 4


class OwnKafka:
    """A Kafka broker of this test's own, started and stopped by ``deploy/kafka/``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.env = dict(
            os.environ,
            FLOWGUARD_KAFKA_PORT=str(self.port),
            FLOWGUARD_KAFKA_CONTROLLER_PORT=str(free_port()),
        )
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _run(self, script: str) -> None:
        done = subprocess.run(
            [str(REPO / "deploy" / "kafka" / script)],
            env=self.env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"deploy/kafka/{script} failed:\n{done.stderr[-3000:]}"

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def remove(self) -> None:
        self.stop()
        home = Path(os.environ.get("FLOWGUARD_HOME", REPO / ".flowguard"))
        shutil.rmtree(home / "kafka" / str(self.port), ignore_errors=True)


@pytest.fixture
def own_kafka() -> Iterator[OwnKafka]:
    kafka = OwnKafka()
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.remove()


def task_events(values: list[dict[str, Any]], ids: set[str]) -> list[dict[str, Any]]:
    return [v for v in values if v.get("kind", "").startswith("task.") and v["task_id"] in ids]


def final_status(values: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = [v for v in values if v.get("kind") == "bridge.status"]
    assert statuses, "no bridge.status record"
    return statuses[-1]


def test_kafka_down_for_10s_the_bridge_recovers_and_counts_every_drop_exactly(
    tmp_path: Path, broker: str, own_kafka: OwnKafka, topic_prefix: str
) -> None:
    asyncio.run(create_topics(own_kafka.bootstrap, topic_prefix, 30))
    events = TopicReader(own_kafka.bootstrap, f"{topic_prefix}.events")
    worker = start_worker(celery_worker(tmp_path, broker, concurrency=4))
    bridge = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=own_kafka.bootstrap, prefix=topic_prefix,
        buffer_size="60", kafka_timeout_seconds="2",
    ).start()  # fmt: skip
    app = celery_client(broker)
    calls = redis.Redis.from_url(broker)

    def send(prefix: str, count: int) -> set[str]:
        ids = {f"{prefix}-{i}" for i in range(count)}
        for task_id in sorted(ids):
            app.send_task("demo.tasks.add", (1, 2), task_id=task_id)
        return ids

    def ran(ids: set[str]) -> bool:
        return ids <= {call["task_id"] for call in recorded_calls(calls)}

    try:
        bridge.wait_for_log("snapshot:")
        before = send("before", 10)
        events.wait_for(
            lambda v: len(task_events(v, before)) == EVENTS_PER_TASK * len(before),
            timeout=60, what="the tasks sent before the outage in Kafka",
        )  # fmt: skip

        own_kafka.stop()
        down_since = time.monotonic()
        during = send("during", 60)
        wait_until(lambda: ran(during), timeout_seconds=60, what="the tasks run during the outage")
        bridge.wait_for_log("does not take events", timeout=30)
        bridge.wait_for_log("dropped", timeout=30)
        # The outage itself, not a synchronization: Kafka stays down for OUTAGE_SECONDS.
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
        own_kafka.start()

        bridge.wait_for_log("is back", timeout=60)
        after = send("after", 10)
        events.wait_for(
            lambda v: len(task_events(v, after)) == EVENTS_PER_TASK * len(after),
            timeout=60, what="the tasks sent after the outage in Kafka",
        )  # fmt: skip
        assert bridge.stop() == 0, bridge.log()
        values = events.poll()
    finally:
        bridge.kill()
        worker.kill()

    status = final_status(values)
    assert status["buffered"] == 0
    assert status["events_invalid"] == 0
    assert status["events_received"] == status["events_published"] + status["events_dropped"]
    dropped_tasks = {
        kind: n for kind, n in status["events_dropped_by_kind"].items() if kind.startswith("task.")
    }
    assert sum(dropped_tasks.values()) > 0, "the buffer of 60 should have overflowed"
    published = task_events(values, before | during | after)
    # Nothing published twice across the producer's retries, nothing lost without a count.
    assert len({(v["task_id"], v["kind"]) for v in published}) == len(published)
    expected = EVENTS_PER_TASK * len(before | during | after)
    assert len(published) + sum(dropped_tasks.values()) == expected
    by_kind = Counter(v["kind"] for v in task_events(values, during))
    for kind in ("task.sent", "task.received", "task.started", "task.succeeded"):
        assert by_kind[kind] + dropped_tasks.get(kind, 0) == len(during), kind


def test_a_restarted_bridge_publishes_the_running_task_from_its_snapshot(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    topic_prefix = topics
    events = TopicReader(kafka_bootstrap, f"{topic_prefix}.events")
    worker = start_worker(celery_worker(tmp_path, broker))
    first = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=kafka_bootstrap, prefix=topic_prefix,
    ).start()  # fmt: skip
    second = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=kafka_bootstrap, prefix=topic_prefix,
        name="bridge-restarted",
    )  # fmt: skip
    try:
        first.wait_for_log("snapshot:")
        celery_client(broker).send_task("demo.tasks.slow", (60,), task_id="t-slow")
        events.wait_for(
            lambda v: any(e.get("kind") == "task.started" for e in task_events(v, {"t-slow"})),
            timeout=60, what="t-slow to start",
        )  # fmt: skip
        first.send_signal(signal.SIGKILL)
        first.stop(timeout=10)
        seen_before = len(events.poll())

        second.start()
        snapshots = events.wait_for(
            lambda v: [
                e for e in v[seen_before:]
                if e.get("kind") == "task.snapshot" and e["task_id"] == "t-slow"
            ],
            timeout=60, what="a task.snapshot of t-slow from the restarted bridge",
        )  # fmt: skip
    finally:
        first.kill()
        second.kill()
        worker.kill()

    [snapshot] = snapshots
    assert snapshot["state"] == "active"
    assert snapshot["name"] == "demo.tasks.slow"
    assert snapshot["hostname"].endswith("@flowguard")
    assert snapshot["cluster"] == CLUSTER
    assert snapshot["args"] == "(60,)"
    # The first bridge's snapshot came before the task existed: only the restarted one has it.
    assert not [
        e for e in events.poll()[:seen_before]
        if e.get("kind") == "task.snapshot" and e["task_id"] == "t-slow"
    ]  # fmt: skip


def bridge_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR flowguard.bridge: " in line]


def tracebacks(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("Traceback")]


def test_kafka_unreachable_at_start_said_once_then_published_to_when_it_appears(
    tmp_path: Path, broker: str, topic_prefix: str
) -> None:
    """Kafka's port has nothing on it at first. One bridge is stopped while it waits; the other
    waits until a broker starts on that port, then publishes. Each says so once (INFO level:
    what an operator sees), with no traceback."""
    kafka = OwnKafka()  # not started yet: nothing listens on its port
    started: list[Process] = []

    def bridge(name: str) -> Process:
        process = bridge_process(
            tmp_path, cluster=CLUSTER, broker=broker, kafka=kafka.bootstrap,
            prefix=topic_prefix, name=name, flags=("--log-level", "INFO"),
        ).start()  # fmt: skip
        started.append(process)
        return process

    try:
        stopped, waiting = bridge("bridge-stopped"), bridge("bridge-waiting")
        for process in (stopped, waiting):
            process.wait_for_log(f"Kafka at {kafka.bootstrap} unreachable", timeout=30)
        assert stopped.stop(signal.SIGTERM, timeout=15) == 0, stopped.log()
        assert "stopped before Kafka answered" in stopped.log()

        kafka.start()
        asyncio.run(create_topics(kafka.bootstrap, topic_prefix, 30))
        events = TopicReader(kafka.bootstrap, f"{topic_prefix}.events")
        events.wait_for(
            lambda v: [e for e in v if e.get("kind") == "bridge.status"],
            timeout=60, what="a status record of the bridge that waited",
        )  # fmt: skip
        waiting.wait_for_log("consuming Celery events", timeout=30)
        assert f"Kafka at {kafka.bootstrap} answers" in waiting.log()
        assert waiting.stop(signal.SIGTERM) == 0, waiting.log()
    finally:
        for process in started:
            process.kill()
        kafka.remove()
    for process in (stopped, waiting):
        log = process.log()
        [line] = bridge_errors(log)
        # Nothing per attempt from aiokafka either, and every client closed.
        assert "Unable connect to" not in log
        assert "Unclosed" not in log
        assert (
            f"flowguard.bridge: Kafka at {kafka.bootstrap} unreachable (KafkaConnectionError"
            in line
        )
        assert "retrying with backoff" in line
        assert not tracebacks(log), log


def test_a_setting_missing_for_commands_stops_the_bridge_with_one_line_and_exit_code_2(
    tmp_path: Path, topic_prefix: str
) -> None:
    """An amqp broker and no dedup_url: refused at start, before it waits for any service."""
    bridge = bridge_process(
        tmp_path, cluster=CLUSTER, broker="amqp://guest:guest@127.0.0.1:1//",
        kafka=f"127.0.0.1:{free_port()}", prefix=topic_prefix, flags=("--log-level", "INFO"),
    ).start()  # fmt: skip
    assert bridge.proc is not None
    bridge.proc.wait(30)
    log = bridge.log()
    assert bridge.proc.returncode == 2, log
    assert log.splitlines() == [
        "error: dedup_url: required when the broker is not Redis (FLOWGUARD_DEDUP_URL, a Redis "
        "URL where the bridge keeps the ids of commands it carried out)"
    ]


def test_sigterm_with_a_batch_in_flight_keeps_every_event_counted(
    tmp_path: Path, broker: str, own_kafka: OwnKafka, topic_prefix: str
) -> None:
    """Kafka stops; events wait in flight and in the buffer; SIGTERM. The shutdown cannot send
    them, and its totals still add up: received = published + dropped + buffered."""
    asyncio.run(create_topics(own_kafka.bootstrap, topic_prefix, 30))
    events = TopicReader(own_kafka.bootstrap, f"{topic_prefix}.events")
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=own_kafka.bootstrap, prefix=topic_prefix,
        kafka_timeout_seconds="2", commands="false",
    ).start()  # fmt: skip
    app = celery_client(broker)
    try:
        bridge.wait_for_log("snapshot:")
        app.send_task("demo.tasks.add", (1, 2), task_id="t-before")
        events.wait_for(
            lambda v: len(task_events(v, {"t-before"})) == EVENTS_PER_TASK,
            timeout=60, what="t-before's events in Kafka",
        )  # fmt: skip
        own_kafka.stop()
        ids = {f"t-during-{i}" for i in range(5)}
        for task_id in sorted(ids):
            app.send_task("demo.tasks.add", (1, 2), task_id=task_id)
        bridge.wait_for_log("does not take events", timeout=30)  # a batch is waiting for acks
        assert bridge.stop(signal.SIGTERM, timeout=60) == 0, bridge.log()
    finally:
        bridge.kill()
        worker.kill()
    [line] = [line for line in bridge.log().splitlines() if " stopped: {" in line]
    totals = ast.literal_eval(line.partition(" stopped: ")[2])
    assert totals["published"] >= EVENTS_PER_TASK
    assert totals["buffered"] > 0, "Kafka was down: something must have been left unsent"
    assert totals["received"] == totals["published"] + totals["dropped"] + totals["buffered"]
