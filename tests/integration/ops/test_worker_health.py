"""A running ``flowguard worker``: /healthz, /readyz that goes unready when progress stops
(and says why, in the answer and in its log), /metrics, and JSON log lines that carry an
execution's ids (docs/operations.md).

- A delivery that hangs holds its outbox partition's commit while the request waits behind
  it: readiness turns 503 naming that partition, and back to 200 once the endpoint answers.
- A record on ``<prefix>.workflows`` that stops the workflow feed (a key that is not UTF-8:
  the feed fails on it at every start) turns readiness 503 naming the feed and its failure;
  before, the feed task died silently and the worker went on with a frozen workflow table
  (issue 15.5). Deleting the topic (the record with it) brings the feed, and readiness, back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from flowguard.control.kafka_admin import create_topics
from tests.e2e.conftest import flowguard_worker
from tests.e2e.test_notifications_once import failure
from tests.helpers import wait_until
from tests.httpserver import RecordingServer, Reply
from tests.integration.ops.probes import get, json_lines, metric, readiness, unready_for
from tests.processes import (
    Process,
    TopicReader,
    free_port,
    print_logs_if_failed,
    produce,
    save_workflows,
)

STALL_SECONDS = "3"


class Worker:
    """Topics, one webhook workflow, and one ``flowguard worker`` with its health port."""

    def __init__(
        self, tmp: Path, kafka: str, prefix: str, hooks: RecordingServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        self.kafka, self.prefix, self.port = kafka, prefix, free_port()
        asyncio.run(create_topics(kafka, prefix, 30))
        tell = {
            "name": "Tell on failures",
            "trigger": {"event": "task.failed"},
            "action": {"type": "webhook", "url": hooks.url_for("/hook")},
        }
        save_workflows(kafka, prefix, [tell])
        with monkeypatch.context() as patch:
            for key, value in {
                "FLOWGUARD_HEALTH_PORT": str(self.port),
                "FLOWGUARD_LOG_FORMAT": "json",
                "FLOWGUARD_PROGRESS_STALL_SECONDS": STALL_SECONDS,
                "FLOWGUARD_ACTIONS_REQUEST_TIMEOUT_SECONDS": "120",
            }.items():
                patch.setenv(key, value)
            self.proc: Process = flowguard_worker(tmp, kafka, prefix).start()
        self.log = TopicReader(kafka, f"{prefix}.execution-log")

    def wait_ready(self, what: str) -> None:
        wait_until(lambda: readiness(self.port)[0] == 200, timeout_seconds=90, what=what)

    def wait_unready(self, needle: str, what: str) -> list[str]:
        reasons: list[str] = wait_until(
            lambda: unready_for(self.port, needle), timeout_seconds=60, what=what
        )
        return reasons


@pytest.fixture
def worker(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Worker, RecordingServer]]:  # fmt: skip
    with RecordingServer() as hooks:
        running = Worker(tmp_path, kafka_bootstrap, topic_prefix, hooks, monkeypatch)
        try:
            yield running, hooks
        finally:
            running.proc.kill()
            print_logs_if_failed(request, [running.proc])


@pytest.mark.integration
def test_a_stalled_partition_makes_the_worker_unready_and_its_metrics_and_logs_tell(
    worker: tuple[Worker, RecordingServer],
) -> None:
    running, hooks = worker
    hooks.script("/hook", Reply(hang=True), Reply(200))
    running.wait_ready("the worker ready (partitions assigned, feed loaded)")
    assert get(running.port, "/healthz")[0] == 200

    produce(running.kafka, f"{running.prefix}.events", failure("t-ops", time.time()))
    hooks.wait_for_requests(1, path="/hook", timeout_seconds=60)
    reasons = running.wait_unready(
        f"no progress on {running.prefix}.deliveries[", "readiness 503 while a delivery hangs"
    )
    assert all(reason.startswith("progress: ") for reason in reasons), reasons
    hooks.release()
    running.wait_ready("readiness back once the endpoint answered")
    wait_until(
        lambda: any(r["actions"][0]["status"] == "succeeded" for r in running.log.poll()),
        timeout_seconds=30, what="the notice delivered",
    )  # fmt: skip

    lines = json_lines(running.proc.log_path)
    health = [line["message"] for line in lines if line["logger"] == "flowguard.health"]
    assert any(m.startswith("not ready: progress: no progress on") for m in health), health
    assert "ready again" in health

    [record] = [r for r in running.log.poll() if r["seq"] == 0]
    eid, workflow = record["execution_id"], record["workflow"]["id"]
    about = [line for line in lines if line.get("execution_id") == eid]
    messages = [line["message"] for line in about]
    assert any(m.startswith(f"execution {eid} of workflow {workflow}") for m in messages)
    assert any(m.startswith("delivery ") and "recorded: succeeded" in m for m in messages)
    assert any(" delivered: HTTP 200" in m for m in messages), messages  # the action runner's
    for line in about:
        assert (line["workflow_id"], line["cluster"], line["task_id"]) == (
            workflow, "prod", "t-ops",
        ), line  # fmt: skip
        assert {"time", "level", "logger", "message"} <= set(line)

    status, text = get(running.port, "/metrics")
    assert status == 200
    assert metric(text, "flowguard_events_total", type="task.failed", cluster="prod") == 1
    assert metric(text, "flowguard_triggers_total", workflow=workflow) == 1
    assert metric(text, "flowguard_executions_total", workflow=workflow) == 1
    assert metric(text, "flowguard_action_deliveries_total", type="webhook",
                  outcome="succeeded") == 1  # fmt: skip
    assert metric(text, "flowguard_action_delivery_duration_seconds_count", type="webhook") == 1
    assert metric(text, "flowguard_breaker_open", workflow=workflow) == 0
    assert metric(text, "flowguard_consumer_lag_records", topic=f"{running.prefix}.events") == 0
    assert metric(text, "flowguard_ready") == 1

    def tables_counted() -> bool:
        text = get(running.port, "/metrics")[1]
        return all(
            (metric(text, "flowguard_table_keys", table=table) or 0) >= 1
            for table in ("chains", "executions")
        )

    wait_until(tables_counted, timeout_seconds=30, what="the chain and execution tables counted")
    # Once ready, the worker moved its startup heap out of the collector's reach (a full
    # collection of it stood the loop still for 44-140 ms: docs/benchmarks.md), and every
    # collection is timed. Without settle_heap nothing is frozen; without the watch, no count.
    assert metric(text, "flowguard_gc_frozen_objects") > 50_000
    assert metric(text, "flowguard_gc_pause_seconds_count", generation="2") >= 1


@pytest.mark.integration
def test_a_workflow_feed_that_stops_makes_the_worker_unready_until_it_runs_again(
    worker: tuple[Worker, RecordingServer],
) -> None:
    running, _ = worker
    running.wait_ready("the worker ready")
    topic = f"{running.prefix}.workflows"
    produce(running.kafka, topic, [(b"\xff\xfe", b"{}")])
    reasons = running.wait_unready(
        f"feed: not caught up with {topic}", "readiness 503 while the feed cannot read its topic"
    )
    assert "UnicodeDecodeError" in " ".join(reasons), reasons
    assert metric(get(running.port, "/metrics")[1], "flowguard_ready") == 0

    asyncio.run(_delete(running.kafka, topic))  # the record goes with it
    wait_until(lambda: _created(running.kafka, running.prefix), timeout_seconds=30,
               what="the topic back")  # fmt: skip
    running.wait_ready("readiness back once the feed reads its topic again")
    messages = [line["message"] for line in json_lines(running.proc.log_path)]
    failed = f"workflow feed on {topic} failed (UnicodeDecodeError"
    assert any(m.startswith(failed) for m in messages)
    assert any(m.startswith(f"not ready: feed: not caught up with {topic}") for m in messages)


async def _delete(kafka: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def _created(kafka: str, prefix: str) -> bool:
    """Create the missing topics again (Kafka may take a moment to forget the deleted one)."""
    try:
        asyncio.run(create_topics(kafka, prefix, 10))
    except Exception:  # the deletion still under way: try again
        return False
    return True
