"""Fixtures for end-to-end tests: a real Celery worker on its own Redis, its bridge, and
``flowguard worker`` processes, all on the test's own topic prefix of the real Kafka."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from flowguard.control.kafka_admin import create_topics
from flowguard.control.store import WorkflowStore
from flowguard.demo.celery_app import recorded_calls
from tests.httpserver import RecordingServer
from tests.processes import (
    TEST_COMMAND_KEY,
    Process,
    TopicReader,
    bridge_process,
    celery_worker,
    print_logs_if_failed,
    python_env,
    start_worker,
)

CLUSTER = "prod"


@pytest.fixture
def slack() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def flowguard_worker(tmp: Path, kafka: str, prefix: str, name: str = "flowguard") -> Process:
    env = python_env(
        FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS=kafka,
        FLOWGUARD_TOPIC_PREFIX=prefix,
        FLOWGUARD_APP_ID=f"{prefix}-app",
        FLOWGUARD_DATA_DIR=str(tmp / f"{name}-data"),
        FLOWGUARD_ACTIONS_ALLOW_HOSTS="127.0.0.1",
        FLOWGUARD_COMMAND_KEYS=f"*={TEST_COMMAND_KEY}",  # the bridges' key: commands signed
    )
    argv = [sys.executable, "-m", "flowguard", "worker", "--log-level", "info"]
    return Process(name, argv, tmp / f"{name}.log", env)


class Stack:
    """One cluster's worker and bridge, one flowguard worker, all on real processes."""

    def __init__(
        self, tmp: Path, broker: str, kafka: str, prefix: str, **celery_options: Any
    ) -> None:
        self.tmp, self.broker, self.kafka, self.prefix = tmp, broker, kafka, prefix
        self.celery_options = celery_options
        asyncio.run(create_topics(kafka, prefix, 30))
        self.celery = start_worker(celery_worker(tmp, broker, **celery_options))
        self.bridge = bridge_process(
            tmp, cluster=CLUSTER, broker=broker, kafka=kafka, prefix=prefix,
            commit_interval_seconds="0",
        ).start()  # fmt: skip
        self.flowguard = flowguard_worker(tmp, kafka, prefix).start()
        self.extra: list[Process] = []
        self.log = TopicReader(kafka, f"{prefix}.execution-log")
        self.events = TopicReader(kafka, f"{prefix}.events")
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

    def another_flowguard(self, name: str) -> Process:
        """One more ``flowguard worker`` in the same consumer group."""
        proc = flowguard_worker(self.tmp, self.kafka, self.prefix, name=name).start()
        self.extra.append(proc)
        return proc

    def close(self) -> None:
        for proc in (*self.extra, self.flowguard, self.bridge, self.celery):
            proc.kill()


def stays(
    predicate: Callable[[], object],
    seconds: float,
    *,
    what: str,
    interval_seconds: float = 0.2,
) -> None:
    """Fail as soon as ``predicate`` turns truthy within ``seconds``: something that must not
    happen (a second firing, an extra execution) did not happen in that long.

    A bounded wait on a condition, not synchronization: the test's answer does not depend on
    the wait being long enough, only its power to catch a late duplicate does.
    """
    deadline = time.monotonic() + seconds
    pause = threading.Event()  # never set: wait() is the poll interval
    while True:
        found = predicate()
        if found:
            raise AssertionError(f"{what} within {seconds:g}s: {found!r}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        pause.wait(min(interval_seconds, remaining))


@pytest.fixture
def celery_options() -> dict[str, Any]:
    """Options of the stack's Celery worker (``tests.processes.celery_worker``); a test
    parametrizes ``celery_options`` to change them (late acks, a short visibility timeout)."""
    return {}


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, broker: str, kafka_bootstrap: str,
    topic_prefix: str, celery_options: dict[str, Any],
) -> Iterator[Stack]:  # fmt: skip
    running = Stack(tmp_path, broker, kafka_bootstrap, topic_prefix, **celery_options)
    try:
        yield running
    finally:
        running.close()
        print_logs_if_failed(
            request, (*running.extra, running.flowguard, running.bridge, running.celery)
        )
