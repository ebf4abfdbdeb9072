"""Every retry reaches its queue on a cluster run with Celery's defaults, and replay of what
the bridge saw decides what the live app decided.

A real Celery worker of :mod:`tests.e2e.routed_cluster` (no ``task-sent`` events, ``task_routes``
to ``payments``, the worker consuming only ``payments``), its bridge given the app
(``--app``), a real ``flowguard worker``, and a workflow that retries three times with
exponential backoff. A card charge that always fails runs four times, each retry on
``payments`` with the original arguments at its planned delay; the fourth failure is
``max_attempts_reached``; each retry settles ``failed`` from its own task's failure. Then
``flowguard replay`` of the bridge's ``--dump`` gives the same executions and decisions.
(Before, the first retry went to ``celery``, which nothing consumes, and never ran.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis

from flowguard.control.kafka_admin import create_topics
from flowguard.control.store import WorkflowStore
from flowguard.engine.decision import QUEUE_UNKNOWN
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from flowguard.replay import replay
from tests.e2e.conftest import flowguard_worker, stays
from tests.e2e.routed_cluster import app as cluster_app
from tests.e2e.routed_cluster import runs
from tests.e2e.test_live_equals_replay import by_execution, first_difference
from tests.helpers import wait_until
from tests.processes import (
    TopicReader,
    bridge_process,
    payments_worker,
    tail,
)

CLUSTER = "routed"
APP = "tests.e2e.routed_cluster"
WORKFLOW = {
    "name": "Retry card charges",
    "trigger": {
        "event": "task.failed",
        "conditions": {"task_name_pattern": "payments.charge_card"},
    },
    "actions": [
        {"type": "retry", "delay_seconds": 1, "max_attempts": 3, "exponential_backoff": True}
    ],
}


def task_events(events: TopicReader, kind: str) -> list[dict[str, Any]]:
    return [e for e in events.poll() if e.get("kind") == kind]


@pytest.mark.integration
def test_every_retry_reaches_the_tasks_queue_and_replay_of_the_dump_agrees(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topic_prefix: str,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    kafka, prefix = kafka_bootstrap, topic_prefix
    asyncio.run(create_topics(kafka, prefix, 30))

    async def save() -> Published:
        async with WorkflowStore(kafka, prefix) as store:
            version = await store.save(WORKFLOW, saved_by="test")
        assert version is not None
        workflow = parse_workflow(version.definition, source="test")
        return Published.of(workflow, version.workflow_version)

    published = asyncio.run(save())
    dump = tmp_path / "bridge-dump.jsonl"
    processes = [payments_worker(tmp_path, APP, ROUTED_CLUSTER_BROKER=broker)]
    bridge = bridge_process(
        tmp_path, cluster=CLUSTER, broker=broker, kafka=kafka, prefix=prefix,
        flags=("--app", f"{APP}:app"), dump=str(dump), commit_interval_seconds="0",
    )  # fmt: skip
    bridge.env["ROUTED_CLUSTER_BROKER"] = broker
    del bridge.env["FLOWGUARD_BROKER"]  # the app's broker is the cluster's
    processes.append(bridge.start())
    processes.append(flowguard_worker(tmp_path, kafka, prefix).start())
    try:
        bridge.wait_for_log("consuming Celery events")
        processes[-1].wait_for_log("workflows loaded from", timeout=90)
        cluster_app.conf.broker_url = broker
        cluster_app.send_task("payments.charge_card", (42,), {"card": "visa"}, task_id="pay-1")

        calls = redis.Redis.from_url(broker)
        log = TopicReader(kafka, f"{prefix}.execution-log")
        events = TopicReader(kafka, f"{prefix}.events")

        def settled() -> list[dict[str, Any]] | None:
            latest = {eid: rs[-1] for eid, rs in by_execution(log.poll()).items()}
            done = [
                r for r in latest.values() if r["actions"][0]["status"] in ("failed", "skipped")
            ]
            return (
                sorted(done, key=lambda r: r["task"]["failure_count"]) if len(done) == 4 else None
            )

        executions = wait_until(settled, timeout_seconds=90, what="four executions settled")
        # Exactly four runs, each retry on payments with the original arguments ...
        ran = runs(calls)
        assert [r["queue"] for r in ran] == ["payments"] * 4
        assert all((r["args"], r["kwargs"]) == ([42], {"card": "visa"}) for r in ran)
        assert {r["root_id"] for r in ran} == {"pay-1"}
        # ... at its planned delay after the failure it answers (the worker's own event times).
        failed = {e["task_id"]: e["timestamp"] for e in task_events(events, "task.failed")}
        started = {e["task_id"]: e["timestamp"] for e in task_events(events, "task.started")}
        retries = [r["actions"][0] for r in executions[:3]]
        assert [(a["attempt"], a["delay_seconds"]) for a in retries] == [(1, 1), (2, 2), (3, 4)]
        for record, action in zip(executions[:3], retries, strict=True):
            waited = started[action["retry_task_id"]] - failed[record["task"]["id"]]
            assert action["delay_seconds"] <= waited <= action["delay_seconds"] + 3, waited
            # It ran and failed again: the log says so (not "succeeded" for a publish).
            assert action["status"] == "failed"
            assert action["detail"].startswith("the retried task failed on pay@flowguard")
        # The first retry's queue was not known from events (no task-sent); the bridge routed
        # it with the app and reported it; every later retry names it.
        assert (retries[0]["queue"], retries[0]["detail"] != QUEUE_UNKNOWN) == (None, True)
        first = by_execution(log.poll())[executions[0]["execution_id"]][0]
        assert first["actions"][0]["detail"] == QUEUE_UNKNOWN
        assert [a["queue"] for a in retries[1:]] == ["payments", "payments"]
        assert (executions[3]["outcome"], executions[3]["reason"]) == (
            "skipped", "max_attempts_reached"
        )  # fmt: skip
        stays(lambda: len(runs(calls)) > 4, 3.0, what="a fifth run")

        # Replay of what the bridge saw decides the same.
        wait_until(
            lambda: dump.read_text().count('"type": "task-failed"') >= 4,
            timeout_seconds=10, what="the dump holding the four failures",
        )  # fmt: skip
        replayed = list(replay([published], dump.read_bytes().splitlines(), cluster=CLUSTER))
        difference = first_difference(by_execution(log.poll()), by_execution(
            [r.model_dump(mode="json", by_alias=True) for r in replayed]
        ))  # fmt: skip
        assert difference is None, difference
    except BaseException:
        for proc in processes:
            print(f"--- {proc.name} log (last 60 lines):\n{tail(proc.log_path, 60)}")
        raise
    finally:
        for proc in processes:
            proc.kill()
