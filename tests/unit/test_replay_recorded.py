"""Acceptance: replays of real recorded Celery streams give the executions that should happen.

Expected values come from tests/data/streams/README.md, what we know happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowguard.control.workflow_files import load_workflows
from flowguard.control.workflow_templates import TEMPLATE_DIR
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from flowguard.replay import ReplayStats, replay
from topics.execution import ExecutionRecord

REPO = Path(__file__).resolve().parents[2]
STREAMS = REPO / "tests" / "data" / "streams"
TEMPLATES = {i.workflow.name: i.workflow for i in load_workflows(TEMPLATE_DIR)}


def webhook_on(event: str, name: str, url: str) -> dict[str, Any]:
    """A workflow that calls a webhook on ``event``: beside a template, it shows which fires."""
    return {"name": name, "trigger": {"event": event}, "action": {"type": "webhook", "url": url}}


WORKERS_DOWN = webhook_on("worker.offline", "workers down", "https://ops.example.com/hook")
ANY_FAILURE = webhook_on("task.failed", "any failure", "https://ops.example.com/failed")


def run(stream: str, *workflows: Any) -> list[ExecutionRecord]:
    published = [
        Published.of(w if not isinstance(w, dict) else parse_workflow(w, source="test"), version=1)
        for w in workflows
    ]
    stats = ReplayStats()
    with (STREAMS / f"{stream}.jsonl").open("rb") as lines:
        records = list(replay(published, lines, stats=stats))
    assert stats.malformed == 0
    return records


def by_task(records: list[ExecutionRecord]) -> dict[str, list[ExecutionRecord]]:
    found: dict[str, list[ExecutionRecord]] = {}
    for record in records:
        key = record.task.id if record.task else record.worker.hostname if record.worker else ""
        found.setdefault(key, []).append(record)
    return found


def test_basic_auto_retry_matches_only_the_network_error_with_its_exact_args() -> None:
    records = run("basic", TEMPLATES["Auto-retry network errors"])
    (record,) = records
    assert record.task is not None
    assert (record.task.id, record.task.name, record.task.queue) == (
        "basic-payment",
        "payments.process_payment",
        "priority-high",
    )
    assert record.task.args == "(100, 'card-4242')"
    assert (record.task.exception_type, record.task.error_message) == (
        "ConnectionError",
        "payment gateway timeout for card-4242",
    )
    (action,) = record.actions
    assert (action.type, action.status, action.attempt, action.delay_seconds) == (
        "retry",
        "planned",
        1,
        60.0,
    )


def test_basic_payment_alert_renders_the_pages_message() -> None:
    import orjson

    from flowguard.celery_wire.events import parse_line
    from flowguard.engine.core import Engine, EngineConfig, Output

    engine = Engine(
        [Published.of(TEMPLATES["Alert on payment processing failures"], 1)], EngineConfig()
    )
    out = Output()
    for line in (STREAMS / "basic.jsonl").read_bytes().splitlines():
        event = parse_line(orjson.loads(line), "default")
        assert event is not None
        engine.feed(event, out)
    (notice,) = out.notices
    assert (
        notice.text
        == "💳 Payment task payments.process_payment failed: payment gateway timeout for card-4242"
    )
    assert notice.action.webhook_url.get_secret_value() not in out.records[0].to_json()


def test_basic_the_pages_combined_conditions_pick_the_email_failure() -> None:
    workflow = {
        "name": "email smtp",
        "trigger": {
            "event": "task.failed",
            "conditions": {
                "task_name_pattern": "myapp.tasks.*",
                "queue": "email",
                "error_pattern": "SMTPException",
            },
        },
        "action": {"type": "retry", "delay_seconds": 30, "max_attempts": 5},
    }
    (record,) = run("basic", workflow)
    assert record.task is not None
    assert record.task.id == "basic-email"
    assert record.task.kwargs == "{'reply_to': 'b@example.com'}"
    assert [c.name for c in record.conditions] == ["task_name_pattern", "queue", "error_pattern"]
    assert all(c.matched for c in record.conditions)


def test_basic_truncated_args_fail_the_retry_with_a_reason() -> None:
    workflow = {
        "name": "bulk",
        "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "demo.tasks.bulk"}},
        "action": {"type": "retry", "delay_seconds": 0},
    }
    (record,) = run("basic", workflow)
    assert record.outcome == "failure"
    (action,) = record.actions
    assert action.status == "failed"
    assert "truncated" in action.detail
    assert "argsrepr_maxsize" in action.detail


def test_celery_retry_failure_count_includes_celerys_own_retries() -> None:
    records = run("celery_retry", TEMPLATES["Escalate after 3 failures"])
    found = by_task(records)
    assert sorted(found) == ["retry-exhausted", "retry-no-exc"], (
        "retry-succeeds never reached FAILURE"
    )
    exhausted = found["retry-exhausted"][0].task
    assert exhausted is not None
    assert exhausted.failure_count == 3
    assert exhausted.exception_type == "TimeoutError"
    no_exc = found["retry-no-exc"][0].task
    assert no_exc is not None
    assert no_exc.exception_type == "MaxRetriesExceededError"


def test_flaky_chain_retries_stop_at_max_attempts_per_chain() -> None:
    workflow = {
        "name": "retry once",
        "trigger": {"event": "task.failed", "conditions": {"error_pattern": "ConnectionError"}},
        "action": {"type": "retry", "delay_seconds": 0, "max_attempts": 1},
        "circuit_breaker": {"max_executions": 50, "time_window_hours": 1},
    }
    records = run("flaky_chain", workflow)
    assert [(r.task.id if r.task else None, r.outcome, r.reason) for r in records] == [
        ("chain-1", "success", None),
        ("chain-2", "skipped", "max_attempts_reached"),
    ]
    assert [r.task.failure_count for r in records if r.task] == [1, 2]
    assert records[1].task is not None
    assert records[1].task.parent_id == "chain-1"


def test_flaky_chain_a_delayed_retry_is_skipped_when_the_chain_recovered_first() -> None:
    workflow = {
        "name": "slow retry",
        "trigger": {
            "event": "task.failed",
            "conditions": {"task_name_pattern": "demo.tasks.flaky_network"},
        },
        "action": {"type": "retry", "delay_seconds": 0.1, "max_attempts": 5},
    }
    records = run("flaky_chain", workflow)
    first = [r for r in records if r.task and r.task.id == "chain-1"]
    assert [(r.seq, r.outcome, r.reason) for r in first] == [
        (0, "success", None),
        (1, "skipped", "recovered"),
    ]
    assert "chain-3" in first[1].actions[0].detail


def test_long_running_fires_execution_time_exceeded_once_for_the_long_task() -> None:
    workflow = {
        "name": "slow tasks",
        "trigger": {"event": "task.execution_time_exceeded", "threshold_seconds": 3},
        "action": {"type": "slack", "webhook_url": "https://hooks.example.com/T/B/X"},
    }
    (record,) = run("long_running", workflow)
    assert record.task is not None
    assert record.task.id == "long-6s"
    assert record.trigger.event == "task.execution_time_exceeded"


def test_worker_sigkill_orphans_the_running_task_at_heartbeat_expiry() -> None:
    records = run("worker_sigkill", TEMPLATES["Recover orphaned tasks"], WORKERS_DOWN)
    events = [
        (r.trigger.event, r.task.id if r.task else r.worker.hostname if r.worker else None)
        for r in records
    ]
    assert events == [
        ("worker.offline", "w1@flowguard"),
        ("task.orphaned", "killed-task"),
        ("worker.offline", "w2@flowguard"),
    ]
    orphan = records[1]
    assert orphan.task is not None
    assert orphan.task.worker == "w1@flowguard"
    assert "no heartbeat for 4s" in orphan.trigger.reason
    (action,) = orphan.actions
    assert (action.type, action.attempt, action.delay_seconds) == ("retry", 1, 300.0)


def test_worker_graceful_stop_fires_worker_offline_once_and_orphans_nothing() -> None:
    records = run("worker_graceful_stop", TEMPLATES["Recover orphaned tasks"], WORKERS_DOWN)
    assert [(r.trigger.event, r.trigger.reason) for r in records] == [
        ("worker.offline", "worker-offline event")
    ]


def test_a_warm_shutdown_with_a_task_running_orphans_nothing_the_task_finishes() -> None:
    # worker-offline comes first (0.994), the running task succeeds after it (2.518).
    records = run("worker_warm_shutdown_busy", TEMPLATES["Recover orphaned tasks"], WORKERS_DOWN)
    assert [r.trigger.event for r in records] == ["worker.offline"]


def test_sigterm_to_the_worker_group_fails_the_task_once_and_orphans_nothing() -> None:
    # worker-offline (0.066), then task-failed for the running task (0.110): one failure.
    records = run(
        "worker_sigterm_group", TEMPLATES["Recover orphaned tasks"], WORKERS_DOWN, ANY_FAILURE
    )
    assert [(r.trigger.event, r.task.id if r.task else None) for r in records] == [
        ("worker.offline", None),
        ("task.failed", "group-slow"),
    ]


@pytest.mark.parametrize("limit", [50, 10])
def test_burst_failures_trip_the_breaker_once(limit: int) -> None:
    workflow = {
        "name": "retry all",
        "trigger": {"event": "task.failed"},
        "action": {"type": "retry", "delay_seconds": 60},
        "circuit_breaker": {"max_executions": limit, "time_window_hours": 1},
    }
    records = run("burst_failures", workflow)
    assert len(records) == 60
    assert sum(r.outcome == "success" for r in records) == limit
    skipped = [r for r in records if r.outcome == "skipped"]
    assert len(skipped) == 60 - limit
    assert {r.reason for r in skipped} == {"circuit_open"}
    assert [r.circuit_breaker.transition for r in records].count("opened") == 1
