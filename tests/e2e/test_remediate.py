"""Bulk remediation on the real stack: a Celery worker, its bridge, a flowguard worker, Kafka.

``flowguard remediate`` (in-process, through click) reads what the bridge published on
``<prefix>.events``; its retries go through the bridge to the worker with the original args,
each recorded on the execution log; ``undo`` rolls back a workflow's delayed retry through the
worker and disables the workflow.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from flowguard.cli import main as cli
from flowguard.control.store import WorkflowStore
from flowguard.settings import get_settings
from tests.e2e.conftest import Stack
from tests.helpers import wait_until
from tests.processes import TEST_COMMAND_KEY, TopicReader
from topics.record import from_iso

FLAKY = "demo.tasks.flaky_network"


@pytest.fixture
def remediate(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``flowguard remediate ARGS`` against the stack's topics, signing as its worker does."""
    monkeypatch.setenv("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", stack.kafka)
    monkeypatch.setenv("FLOWGUARD_TOPIC_PREFIX", stack.prefix)
    monkeypatch.setenv("FLOWGUARD_COMMAND_KEYS", f"*={TEST_COMMAND_KEY}")
    get_settings.cache_clear()

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["remediate", *args])

    yield run
    get_settings.cache_clear()


def failed(stack: Stack, *task_ids: str) -> None:
    def seen() -> bool:
        done = {e.get("task_id") for e in stack.events.poll() if e.get("kind") == "task.failed"}
        return set(task_ids) <= done

    wait_until(seen, timeout_seconds=60, what=f"task.failed of {task_ids} on the events topic")


def test_a_named_run_retries_the_selection_with_the_original_args(
    stack: Stack, remediate: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = {f"k1-{tag}": 7, f"k2-{tag}": 8}
    for task_id, order in ids.items():
        stack.client.send_task(FLAKY, (order,), {"fail_times": 1, "key": task_id},
                               queue="email", task_id=task_id)  # fmt: skip
    stack.client.send_task("demo.tasks.always_fails", ("c-9",), task_id=f"af-{tag}")
    failed(stack, *ids, f"af-{tag}")

    everything = remediate("preview", "--since", "10m", "--json")
    assert everything.exit_code == 0, everything.output
    assert json.loads(everything.stdout)["count"] == 3
    flaky = ("--task", "demo.tasks.flaky_*", "--exception", "ConnectionError", "--since", "10m")
    shown = remediate("preview", *flaky, "--json")
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.stdout)
    assert found["count"] == 2
    assert {s["task_id"] for s in found["sample"]} == set(ids)
    assert {s["args"] for s in found["sample"]} == {"(7,)", "(8,)"}

    # The ceiling refuses a run that selects more; nothing is sent.
    over = remediate("run", *flaky, "--name", "incident 4211", "--ceiling", "1", "--yes")
    assert over.exit_code == 2
    assert "ceiling: the filter selects 2 tasks" in over.stderr
    # Without --yes, the confirmation; answered no, nothing is sent.
    declined = CliRunner().invoke(
        cli, ["remediate", "run", *flaky, "--name", "incident 4211"], input="n\n"
    )
    assert declined.exit_code == 1
    assert "retry 2 tasks as 'incident 4211'?" in declined.stderr

    done = remediate("run", *flaky, "--name", "Incident 4211", "--rate", "4", "--yes",
                     "--by", "alice")  # fmt: skip
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary == {"run": "remediate.incident-4211", "total": 2, "done": 2, "sent": 2,
                       "refused": 0, "aborted": False, "refusals": []}  # fmt: skip

    # Each retry ran once, with the original args and queue, in the failed task's chain.
    def retries() -> list[dict[str, Any]] | None:
        runs = [r for r in stack.runs(FLAKY) if r["root_id"] in ids and r["task_id"] not in ids]
        return runs if len(runs) == 2 else None

    runs = wait_until(retries, timeout_seconds=60, what="both retries to run")
    for r in runs:
        assert r["args"] == [ids[r["root_id"]]]
        assert r["kwargs"] == {"fail_times": 1, "key": r["root_id"]}
        assert r["queue"] == "email"
        assert r["parent_id"] == r["root_id"]
    # Every action is on the execution log, named by the run, paced at 4 a second.
    records = stack.records("remediate.incident-4211")
    assert len(records) == 2
    assert {r["task"]["id"] for r in records} == set(ids)
    for r in records:
        assert r["workflow"]["name"] == "Incident 4211"
        assert r["trigger"]["event"] == "remediate.retry"
        assert "alice" in r["trigger"]["reason"]
        [action] = r["actions"]
        assert (action["type"], action["status"]) == ("retry", "sent")
        assert action["retry_task_id"] in {x["task_id"] for x in runs}
    first, second = sorted(from_iso(r["recorded_at"]) for r in records)
    assert second - first >= 0.2
    results = TopicReader(stack.kafka, f"{stack.prefix}.command-results")
    mine = results.wait_for(
        lambda values: [v for v in values if v["command_id"].startswith("remediate/")] or None,
        timeout=30, what="the bridge's results",
    )  # fmt: skip
    assert {v["status"] for v in mine} == {"done"}

    # The retries succeeded: their failures are recovered, a second run selects none.
    again = remediate("preview", *flaky, "--json")
    wait_until(
        lambda: json.loads(remediate("preview", *flaky, "--json").stdout)["count"] == 0,
        timeout_seconds=30, what="the recovered failures to leave the selection",
    )  # fmt: skip
    assert again.exit_code == 0


async def enabled(stack: Stack, workflow_id: str) -> bool:
    async with WorkflowStore(stack.kafka, stack.prefix) as store:
        latest = store.latest(workflow_id)
        assert latest is not None
        return bool(latest.definition.get("enabled", True))


RETRY_LATER = {
    "name": "Retry flaky later",
    "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "demo.tasks.flaky_*"}},
    "actions": [{"type": "retry", "delay_seconds": 600, "max_attempts": 1}],
}


def test_undo_cancels_a_workflows_delayed_retry_and_disables_it(
    stack: Stack, remediate: Any
) -> None:
    stack.apply(RETRY_LATER)
    wid = "retry-flaky-later"
    stack.client.send_task(FLAKY, (5,), {"fail_times": 1, "key": "u1"}, queue="email",
                           task_id="u1")  # fmt: skip

    def scheduled() -> dict[str, Any] | None:
        found = [r for r in stack.records(wid) if r["actions"]]
        return next((r for r in found if r["actions"][0]["status"] == "scheduled"), None)

    execution = wait_until(scheduled, timeout_seconds=90, what="the delayed retry")
    undone = remediate("undo", "--workflow", wid, "--by", "alice", "--yes")
    assert undone.exit_code == 0, undone.output
    out = json.loads(undone.stdout)
    assert out["disabled"] is True
    [cancelled] = out["cancelled"]
    assert cancelled["task_id"] == execution["actions"][0]["retry_task_id"]

    # The worker rolled the execution back (seq 1, cancelled), and the undo is on the log.
    def rolled_back() -> bool:
        return any(r["execution_id"] == execution["execution_id"] and r["reason"] == "cancelled"
                   for r in stack.records(wid))  # fmt: skip

    wait_until(rolled_back, timeout_seconds=60, what="the execution's cancelled record")
    [undo] = [r for r in stack.records(wid) if r["trigger"]["event"] == "remediate.undo"]
    assert [a["status"] for a in undo["actions"]] == ["cancelled"]
    assert "alice" in undo["trigger"]["reason"]
    assert asyncio.run(enabled(stack, wid)) is False
    # Nothing is pending any more: a second undo cancels nothing.
    again = remediate("undo", "--workflow", wid, "--yes")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["cancelled"] == []


def test_a_revoke_run_keeps_queued_tasks_from_running(stack: Stack, remediate: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    gate = f"gate-{tag}"
    # Both worker processes held until the revokes are in: the adds wait in the queue (or
    # reserved by the worker). A fixed 4 s hold was shorter than the run on a loaded CI
    # machine, and the adds ran first.
    for n in range(2):
        stack.client.send_task("demo.tasks.hold", (gate,), task_id=f"busy{n}-{tag}")
    wait_until(lambda: len(stack.runs("demo.tasks.hold")) >= 2, timeout_seconds=30,
               what="both holding tasks to start")  # fmt: skip
    queued = [f"add{n}-{tag}" for n in range(2)]
    for task_id in queued:
        stack.client.send_task("demo.tasks.add", (1, 2), task_id=task_id)

    def sent() -> bool:
        seen = {e.get("task_id") for e in stack.events.poll() if e.get("kind") == "task.sent"}
        return set(queued) <= seen

    wait_until(sent, timeout_seconds=30, what="the adds' task-sent events")
    args = ("--action", "revoke", "--task", "demo.tasks.add", "--since", "10m")
    done = remediate("run", *args, "--name", "drain adds", "--rate", "20", "--yes")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout.splitlines()[-1])["sent"] == 2

    def revoked() -> bool:
        found = {e.get("task_id") for e in stack.events.poll() if e.get("kind") == "task.revoked"}
        return set(queued) <= found

    results = TopicReader(stack.kafka, f"{stack.prefix}.command-results")
    results.wait_for(
        lambda values: {
            task_id for task_id in queued for v in values
            if v["command_id"].endswith(f"/{task_id}") and v["status"] == "done"
        } == set(queued) or None,
        timeout=60, what="the bridge to carry out both revokes",
    )  # fmt: skip
    stack.calls.rpush(gate, "go", "go")  # free both pool processes
    wait_until(revoked, timeout_seconds=60, what="the worker to revoke both adds")
    busy = {f"busy{n}-{tag}" for n in range(2)}

    def freed() -> bool:
        done = {e.get("task_id") for e in stack.events.poll() if e.get("kind") == "task.succeeded"}
        return busy <= done

    wait_until(freed, timeout_seconds=30, what="the slow tasks to finish")
    assert not stack.runs("demo.tasks.add")  # the worker was free for them: they never ran
    records = stack.records("remediate.drain-adds")
    assert {(r["task"]["id"], r["actions"][0]["type"]) for r in records} == {
        (task_id, "revoke") for task_id in queued
    }
