"""Acceptance: task.stuck and task.duplicate_start on real recorded Celery streams.

What happened is in tests/data/streams/README.md: in worker_sigkill_redelivered the killed
worker's task is delivered again (same id, retries 0) and starts a second time, 10.5 s after
its first start; in stuck_prefetched prefetched-add waits 4.0 s received and not started
behind two 4 s tasks filling the pool.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_replay_recorded import by_task, run


def stuck(threshold: float, stage: str | None = None) -> dict[str, Any]:
    trigger: dict[str, Any] = {"event": "task.stuck", "threshold_seconds": threshold}
    if stage is not None:
        trigger["stage"] = stage
    return {
        "name": "stuck",
        "trigger": trigger,
        "action": {"type": "slack", "webhook_url": "https://hooks.example.com/x"},
    }


DUPLICATE = {
    "name": "duplicates",
    "trigger": {"event": "task.duplicate_start"},
    "action": {"type": "slack", "webhook_url": "https://hooks.example.com/x"},
}


def test_the_redelivered_task_is_a_duplicate_start_once() -> None:
    records = run("worker_sigkill_redelivered", DUPLICATE)
    (record,) = records
    assert record.task is not None
    assert (record.task.id, record.task.name) == ("redelivered-task", "demo.tasks.slow_exclusive")
    assert record.trigger.event == "task.duplicate_start"
    assert "started again on w1@flowguard" in record.trigger.reason
    assert "no retry between" in record.trigger.reason


@pytest.mark.parametrize(
    "stream",
    ["basic", "celery_retry", "flaky_chain", "long_running", "worker_sigkill", "stuck_prefetched"],
)
def test_no_duplicate_start_where_no_task_was_delivered_twice(stream: str) -> None:
    """Celery's own retries start the same id again, but in a new attempt: not a duplicate."""
    assert run(stream, DUPLICATE) == []


@pytest.mark.parametrize(("stage"), [None, "unstarted"])
def test_the_prefetched_task_is_stuck_unstarted_once(stage: str | None) -> None:
    records = by_task(run("stuck_prefetched", stuck(2, stage)))
    assert set(records) == {"prefetched-add"}, "the busy tasks started at once"
    (record,) = records["prefetched-add"]
    assert record.trigger.event == "task.stuck"
    assert record.trigger.reason.startswith("received by w1@flowguard 2s ago and not started")
    assert record.task is not None
    assert record.task.worker == "w1@flowguard"


@pytest.mark.parametrize(
    ("threshold", "stage"), [(4.5, "unstarted"), (2, "unreceived"), (0.5, "unreceived")]
)
def test_nothing_is_stuck_past_the_wait_or_at_the_other_stage(threshold: float, stage: str) -> None:
    """It waited 4.0 s, under 4.5; every task was received within 2 ms of being sent."""
    assert run("stuck_prefetched", stuck(threshold, stage)) == []
