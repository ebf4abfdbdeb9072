"""Where the bridge sends a retry, on a real worker with Celery's defaults: no ``task-sent``
events, ``task_routes`` sending the task to ``payments``, the worker consuming only
``payments`` (the default queue ``celery`` has no consumer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from tests.helpers import wait_until
from tests.integration.bridge.test_bridge_commands import (
    results_for,
    results_of,
    retry_command,
    send,
)
from tests.processes import (
    Process,
    TopicReader,
    bridge_process,
    payments_worker,
)
from topics.commands import RetryCommand

CLUSTER = "routed-cluster"
APP = "tests.integration.bridge.routed_app"


def bridge(tmp: Path, broker: str, kafka: str, topics: str, *, with_app: bool,
           name: str = "bridge") -> Process:  # fmt: skip
    """With the app: no --broker (the app's broker is the cluster's)."""
    flags = ("--app", f"{APP}:app") if with_app else ()
    process = bridge_process(
        tmp, cluster=CLUSTER, broker=broker, kafka=kafka, prefix=topics, name=name, flags=flags,
        inspect_timeout_seconds="1", dump=str(tmp / f"{name}.jsonl"),
    )  # fmt: skip
    process.env["ROUTED_APP_BROKER"] = broker
    if with_app:
        del process.env["FLOWGUARD_BROKER"]
    process.start()
    process.wait_for_log("consuming Celery events")
    return process


def charge_retry(command_id: str, **fields: Any) -> RetryCommand:
    """A retry of ``routed.charge`` with no queue: the engine never saw a task-sent."""
    charge = {"cluster": CLUSTER, "name": "routed.charge", "args": "(5,)",
              "kwargs": "{'card': 'visa'}"}  # fmt: skip
    return retry_command(command_id, "pay-1", **{**charge, **fields})


def test_with_the_app_a_retry_without_queue_goes_where_task_routes_send_it(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = payments_worker(tmp_path, APP, ROUTED_APP_BROKER=broker)
    process = bridge(tmp_path, broker, kafka_bootstrap, topics, with_app=True)
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    events = TopicReader(kafka_bootstrap, f"{topics}.events")
    command = charge_retry("c-app")
    child = command.task_id
    try:
        send(kafka_bootstrap, topics, command)
        [result] = results_for(results, "c-app", 1)

        def received() -> list[tuple[bytes | None, dict[str, Any], int]] | None:
            events.poll()
            mine = [(k, v, p) for k, v, p, _ in events.records if v.get("task_id") == child]
            return mine if "task.succeeded" in [v["kind"] for _, v, _ in mine] else None

        found = wait_until(received, timeout_seconds=60, what="the retry to run on the worker")
    finally:
        process.stop()
        worker.stop()
    assert result["status"] == "done", result
    assert (result["task_id"], result["queue"], result["routing_key"]) == (
        child, "payments", "payments",
    )  # fmt: skip
    assert "on queue payments" in result["detail"]
    kinds = [v["kind"] for _, v, _ in found]
    assert kinds.count("task.sent") == 1, kinds
    assert {"task.received", "task.started", "task.succeeded"} <= set(kinds)
    [sent] = [v for _, v, _ in found if v["kind"] == "task.sent"]
    assert sent["hostname"].startswith("flowguard-bridge@")
    assert (sent["queue"], sent["exchange"], sent["routing_key"]) == ("payments", "", "payments")
    assert (sent["name"], sent["args"], sent["kwargs"]) == ("routed.charge", "(5,)",
                                                            "{'card': 'visa'}")  # fmt: skip
    assert (sent["root_id"], sent["parent_id"]) == ("pay-1", "pay-1")
    # Keyed like every event of the chain: one key, one partition.
    assert {key for key, _, _ in found} == {f"{CLUSTER}/pay-1".encode()}
    assert len({partition for _, _, partition in found}) == 1
    assert "queue of routed.charge unknown" not in process.log()
    # Also in --dump, for replay to learn the queue as the live app does.
    dumped = [json.loads(line) for line in (tmp_path / "bridge.jsonl").read_text().splitlines()]
    assert [d for d in dumped if d.get("kind") == "task.sent"] == [sent]
    # The status says the bridge routes by the app (what `flowguard doctor` reads).
    statuses = [v for _, v, _, _ in events.records if v["kind"] == "bridge.status"]
    assert statuses[-1]["celery_app"] == f"{APP}:app"


def test_without_the_app_a_retry_without_queue_is_refused_not_sent_to_celery(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = payments_worker(tmp_path, APP, ROUTED_APP_BROKER=broker)
    process = bridge(tmp_path, broker, kafka_bootstrap, topics, with_app=False)
    try:
        first, second = results_of(process, kafka_bootstrap, topics,
                                   charge_retry("c-none-1"), charge_retry("c-none-2"))  # fmt: skip
    finally:
        worker.stop()
    for result in (first, second):
        assert result["status"] == "failed", result
        assert result["detail"].startswith(
            "queue 'celery' has no consumer; workers consume: payments"
        ), result["detail"]
        assert result["queue"] == "celery"
        assert result["detail"].endswith(
            "(the command names no queue and the bridge has no Celery app: start it with --app)"
        )
    assert redis.Redis.from_url(broker).llen("celery") == 0  # nothing waits there
    warnings = [line for line in process.log().splitlines() if "queue of routed.charge" in line]
    assert len(warnings) == 1, warnings  # once per task name
    assert "--app" in warnings[0]
    assert "task_send_sent_event = True" in warnings[0]


def test_with_no_worker_answering_the_retry_is_sent_and_says_it_was_not_checked(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    """No worker up at all (a restart, a deploy): the message waits in the broker for them."""
    process = bridge(tmp_path, broker, kafka_bootstrap, topics, with_app=False)
    [result] = results_of(
        process, kafka_bootstrap, topics, charge_retry("c-alone", queue="payments")
    )
    assert result["status"] == "done", result
    assert result["detail"].endswith("(not checked: no worker answered within 1 s)")
    assert redis.Redis.from_url(broker).llen("payments") == 1
