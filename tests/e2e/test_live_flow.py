"""The whole flow, real parts only: Celery worker on Redis -> bridge -> Kafka -> flowguard worker
-> commands -> bridge -> Celery, and the execution log."""

from __future__ import annotations

from flowguard.demo.celery_app import recorded_calls
from tests.e2e.conftest import Stack
from tests.helpers import wait_until

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
