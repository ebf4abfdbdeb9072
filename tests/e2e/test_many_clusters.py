"""Many clusters into one flowguard (issue 17.6): three real Celery clusters (each its own
Redis, worker and bridge) and one ``flowguard worker``; the third cluster is added while the
others run, with no flowguard change.

- a workflow scoped by ``cluster`` fires only for its cluster;
- a retry goes back to the cluster its task came from, and runs there;
- a worker going offline in one cluster is reported for that cluster only;
- ``flowguard history --cluster`` shows one cluster's executions.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from flowguard.demo.celery_app import recorded_calls
from tests.e2e.conftest import flowguard_worker
from tests.e2e.test_notifications_once import Flow
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import (
    Process,
    bridge_process,
    celery_worker,
    private_redis,
    python_env,
    start_worker,
    tail,
)


class Cluster:
    """One Celery cluster: its Redis, a worker, a bridge, and a client to send tasks."""

    def __init__(self, name: str, tmp: Path, broker: str, kafka: str, prefix: str) -> None:
        self.name, self.broker = name, broker
        self.worker = start_worker(celery_worker(tmp, broker, name=f"w-{name}"))
        self.bridge = bridge_process(
            tmp, cluster=name, broker=broker, kafka=kafka, prefix=prefix, name=f"bridge-{name}",
            commit_interval_seconds="0",
        ).start()  # fmt: skip
        self.bridge.wait_for_log("consuming Celery events")
        self.client = Celery(f"client-{name}", broker=broker)
        self.calls = redis.Redis.from_url(broker)

    def runs(self, name: str) -> list[dict[str, Any]]:
        return [c for c in recorded_calls(self.calls) if c["name"] == name]

    def processes(self) -> list[Process]:
        return [self.worker, self.bridge]


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(private_redis(tmp_path / name)) for name in "abc"]


def history(kafka: str, prefix: str, cluster: str) -> list[dict[str, Any]]:
    env = python_env(FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS=kafka, FLOWGUARD_TOPIC_PREFIX=prefix)
    out = subprocess.run(
        [sys.executable, "-m", "flowguard", "history", "--cluster", cluster, "--format", "jsonl"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.integration
def test_three_clusters_into_one_flowguard(
    tmp_path: Path, brokers: list[str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka, prefix = kafka_bootstrap, topic_prefix
    with RecordingServer() as hooks:
        definitions = [
            {
                "name": "Tell cluster a",
                "trigger": {"event": "task.failed", "conditions": {"cluster": "a"}},
                "action": {"type": "webhook", "url": hooks.url_for("/a")},
            },
            {
                "name": "Retry flaky calls",
                "trigger": {
                    "event": "task.failed",
                    "conditions": {"task_name_pattern": "demo.tasks.flaky_network"},
                },
                "action": {"type": "retry", "delay_seconds": 0, "max_attempts": 1},
            },
            {
                "name": "Workers offline",
                "trigger": {"event": "worker.offline"},
                "action": {"type": "webhook", "url": hooks.url_for("/offline")},
            },
        ]

        flow = Flow(tmp_path, kafka, prefix, hooks, definitions)
        processes: list[Process] = [flowguard_worker(tmp_path, kafka, prefix).start()]
        try:
            processes[0].wait_for_log("workflows loaded from", timeout=90)
            a = Cluster("a", tmp_path, brokers[0], kafka, prefix)
            b = Cluster("b", tmp_path, brokers[1], kafka, prefix)
            processes += [*a.processes(), *b.processes()]

            # Scoped by cluster: a failure in each, one notice, for a's.
            a.client.send_task("demo.tasks.always_fails", ("c-a",), task_id="fail-a")
            b.client.send_task("demo.tasks.always_fails", ("c-b",), task_id="fail-b")
            [told] = hooks.wait_for_requests(1, path="/a", timeout_seconds=60)
            assert told.json()["execution"]["task"]["id"] == "fail-a"

            # A retry goes back where its task came from.
            b.client.send_task(
                "demo.tasks.flaky_network", (7,), {"fail_times": 1, "key": "b"}, task_id="flaky-b"
            )
            wait_until(lambda: len(b.runs("demo.tasks.flaky_network")) == 2, timeout_seconds=60,
                       what="the retry run on b")  # fmt: skip
            assert a.runs("demo.tasks.flaky_network") == []

            # A third cluster joins while the others run: one bridge, no flowguard change.
            c = Cluster("c", tmp_path, brokers[2], kafka, prefix)
            processes += c.processes()
            c.client.send_task(
                "demo.tasks.flaky_network", (8,), {"fail_times": 1, "key": "c"}, task_id="flaky-c"
            )
            wait_until(lambda: len(c.runs("demo.tasks.flaky_network")) == 2, timeout_seconds=60,
                       what="the retry run on c")  # fmt: skip
            assert len(b.runs("demo.tasks.flaky_network")) == 2
            assert all(r["root_id"] == "flaky-c" for r in c.runs("demo.tasks.flaky_network"))

            # b's worker stops (a warm shutdown says goodbye): reported for b only.
            b.worker.stop(signal.SIGTERM)
            [offline] = hooks.wait_for_requests(1, path="/offline", timeout_seconds=60)
            assert offline.json()["execution"]["worker"] == {
                "cluster": "b",
                "hostname": "w-b@flowguard",
            }
            assert len(hooks.requests("/a")) == 1

            # The history, one cluster at a time.
            flow.log.wait_for(lambda rs: len(rs) >= 5, timeout=30, what="the executions logged")
            for name, task_ids in {"a": {"fail-a"}, "b": {"flaky-b"}, "c": {"flaky-c"}}.items():
                rows = history(kafka, prefix, name)
                assert rows, name
                assert {(r["task"] or r["worker"])["cluster"] for r in rows} == {name}
                assert task_ids <= {r["task"]["id"] for r in rows if r["task"]}, rows
        except BaseException:
            for proc in processes:
                print(f"--- {proc.name} log (last 40 lines):\n{tail(proc.log_path, 40)}")
            raise
        finally:
            for proc in reversed(processes):
                proc.kill()
