"""The whole flow, real parts only: Celery worker on Redis -> bridge -> Kafka -> flowguard worker
-> commands -> bridge -> Celery, and the execution log, Slack-shaped posts to a local server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from flowguard.demo.celery_app import recorded_calls
from flowguard.kafka_admin import create_topics
from flowguard.store import WorkflowStore
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import (
    Process,
    TopicReader,
    bridge_process,
    celery_worker,
    private_redis,
    python_env,
    start_worker,
)

CLUSTER = "prod"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    with private_redis(tmp_path) as url:
        yield url


@pytest.fixture
def slack() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def flowguard_worker(tmp: Path, kafka: str, prefix: str, name: str = "flowguard") -> Process:
    env = python_env(
        FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS=kafka,
        FLOWGUARD_TOPIC_PREFIX=prefix,
        FLOWGUARD_APP_ID=f"{prefix}-app",
        FLOWGUARD_ACTIONS_ALLOW_HOSTS="127.0.0.1",
    )
    argv = [sys.executable, "-m", "flowguard", "worker", "--log-level", "info"]
    return Process(name, argv, tmp / f"{name}.log", env)


class Stack:
    """One cluster's worker and bridge, one flowguard worker, all on real processes."""

    def __init__(self, tmp: Path, broker: str, kafka: str, prefix: str) -> None:
        self.tmp, self.broker, self.kafka, self.prefix = tmp, broker, kafka, prefix
        asyncio.run(create_topics(kafka, prefix, 30))
        self.celery = start_worker(celery_worker(tmp, broker))
        self.bridge = bridge_process(
            tmp, cluster=CLUSTER, broker=broker, kafka=kafka, prefix=prefix,
            commit_interval_seconds="0",
        ).start()  # fmt: skip
        self.flowguard = flowguard_worker(tmp, kafka, prefix).start()
        self.log = TopicReader(kafka, f"{prefix}.execution-log")
        self.calls = redis.Redis.from_url(broker)
        self.client = Celery("test-client", broker=broker)
        self.client.conf.task_send_sent_event = True
        self.bridge.wait_for_log("consuming Celery events")
        self.flowguard.wait_for_log("workflows loaded from", timeout=90)

    def apply(self, *definitions: dict[str, Any]) -> None:
        async def save() -> None:
            async with WorkflowStore(self.kafka, self.prefix) as store:
                for definition in definitions:
                    await store.save(definition, saved_by="test")

        asyncio.run(save())

    def records(self, workflow: str) -> list[dict[str, Any]]:
        return [r for r in self.log.poll() if r["workflow"]["id"] == workflow]

    def runs(self, name: str) -> list[dict[str, Any]]:
        return [c for c in recorded_calls(self.calls) if c["name"] == name]

    def close(self) -> None:
        for proc in (self.flowguard, self.bridge, self.celery):
            proc.kill()


@pytest.fixture
def stack(tmp_path: Path, broker: str, kafka_bootstrap: str, topic_prefix: str) -> Iterator[Stack]:
    running = Stack(tmp_path, broker, kafka_bootstrap, topic_prefix)
    try:
        yield running
    finally:
        running.close()


RETRY_NETWORK = {
    "name": "Auto-retry network errors",
    "trigger": {
        "event": "task.failed",
        "conditions": {"task_name_pattern": "demo.tasks.flaky_*", "error_pattern": "Connection*"},
    },
    "actions": [{"type": "retry", "delay_seconds": 2, "max_attempts": 3}],
}


def test_a_transient_failure_is_retried_after_its_delay_and_succeeds(stack: Stack) -> None:
    stack.apply(RETRY_NETWORK)
    stack.client.send_task(
        "demo.tasks.flaky_network", (42,), {"fail_times": 1, "key": "e2e-1"},
        queue="email", task_id="t-flaky",
    )  # fmt: skip

    runs = wait_until(
        lambda: (r := stack.runs("demo.tasks.flaky_network")) and len(r) >= 2 and r,
        timeout_seconds=60, what="the retry to run on the Celery worker",
    )  # fmt: skip
    first, retry = runs[0], runs[1]
    assert (retry["args"], retry["kwargs"]) == (first["args"], first["kwargs"])
    assert retry["queue"] == "email"
    assert retry["root_id"] == "t-flaky"
    assert retry["parent_id"] == "t-flaky"
    assert retry["task_id"] != "t-flaky"

    records = wait_until(
        lambda: (r := stack.records("auto-retry-network-errors")) and len(r) >= 2 and r,
        timeout_seconds=30, what="two execution records",
    )  # fmt: skip
    decided, sent = records[0], records[1]
    assert decided["execution_id"] == sent["execution_id"]
    assert (decided["seq"], sent["seq"]) == (0, 1)
    [action] = decided["actions"]
    assert action["status"] == "scheduled"
    assert action["delay_seconds"] == 2
    assert sent["actions"][0]["status"] == "sent"
    assert sent["actions"][0]["retry_task_id"] == retry["task_id"]
    assert decided["task"]["id"] == "t-flaky"
    assert decided["dry_run"] is False
    assert decided["recorded_at"]
    # The retry succeeded: nothing else ran, and no third record appeared.
    wait_until(
        lambda: any(c["task_id"] == retry["task_id"] for c in recorded_calls(stack.calls)),
        timeout_seconds=10, what="the retry recorded",
    )  # fmt: skip
    assert len(stack.runs("demo.tasks.flaky_network")) == 2
