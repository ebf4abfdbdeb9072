"""The whole flow, real parts only: Celery worker on Redis -> bridge -> Kafka -> flowguard worker
-> commands -> bridge -> Celery, and the execution log."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from flowguard.demo.celery_app import recorded_calls
from tests.e2e.conftest import CLUSTER, Stack, stays
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import TopicReader, celery_worker, produce, start_worker
from topics.record import from_iso

log = logging.getLogger(__name__)

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
    # A record nobody can decode goes to the DLQ with the reason; the stream goes on.
    produce(stack.kafka, f"{stack.prefix}.events", [(b"prod/x", b'{"kind": "task.failed"')])
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
    # The real worker ran the retry no earlier than the delay after the failure (both times
    # are the Celery worker's own event timestamps).
    failed = task_event(stack, "task.failed", "t-flaky")
    started = task_event(stack, "task.started", retry["task_id"])
    waited = started["timestamp"] - failed["timestamp"]
    log.info("retry started %.3fs after the failure", waited)
    assert 2 <= waited <= 2 + 3, f"the retry started {waited:.2f}s after the failure"
    # The retried task's own events settle the action: it ran and succeeded (the bridge's
    # result only says it was published).
    settled = wait_until(
        lambda: [
            r for r in stack.records("auto-retry-network-errors")
            if r["actions"][0]["status"] == "succeeded"
        ],
        timeout_seconds=30, what="the retry settled by its own task's events",
    )  # fmt: skip
    [done] = settled
    assert done["execution_id"] == decided["execution_id"]
    assert done["actions"][0]["detail"] == "the retried task ran and succeeded on w1@flowguard"
    assert done["outcome"] == "success"
    published = [
        r["actions"][0]["detail"] for r in stack.records("auto-retry-network-errors")
        if r["actions"][0]["detail"].startswith("published by the bridge")
    ]  # fmt: skip
    # The bridge's word comes before the task's or not at all (a status never moves back).
    assert all(d.startswith(f"published by the bridge ({CLUSTER}: sent demo.tasks.flaky_network[")
               for d in published)  # fmt: skip
    # The retry succeeded: nothing else ran.
    wait_until(
        lambda: any(c["task_id"] == retry["task_id"] for c in recorded_calls(stack.calls)),
        timeout_seconds=10, what="the retry recorded",
    )  # fmt: skip
    assert len(stack.runs("demo.tasks.flaky_network")) == 2
    [letter] = TopicReader(stack.kafka, f"{stack.prefix}.dlq").poll()
    assert letter["reason"].startswith("cannot decode: ")
    assert letter["raw"] == '{"kind": "task.failed"'
    assert letter["topic"] == f"{stack.prefix}.events"


def task_event(stack: Stack, kind: str, task_id: str) -> dict[str, Any]:
    """The first ``kind`` event of ``task_id`` on the events topic (waits for it)."""
    found: dict[str, Any] = wait_until(
        lambda: next(
            (e for e in stack.events.poll() if e.get("kind") == kind and e["task_id"] == task_id),
            None,
        ),
        timeout_seconds=30, what=f"{kind} of {task_id} in Kafka",
    )  # fmt: skip
    return found


def worker_events(stack: Stack, hostname: str) -> list[dict[str, Any]]:
    """The worker's online and heartbeat events in Kafka (what its liveness is judged on)."""
    return [
        e
        for e in stack.events.poll()
        if e.get("kind") in ("worker.online", "worker.heartbeat") and e["hostname"] == hostname
    ]


def expiry_seconds(beats: list[dict[str, Any]]) -> float:
    """Celery's rule: a worker is offline when no heartbeat came for twice its interval."""
    return 2 * float(max(beats, key=lambda e: e["timestamp"])["freq"])


def counts(stack: Stack, workflow: str, server: RecordingServer, path: str) -> tuple[int, int]:
    """(executions of ``workflow`` on the log, requests to ``path``)."""
    return len(latest(stack.records(workflow))), len(server.requests(path=path))


def more_than_one(
    stack: Stack, workflow: str, server: RecordingServer, path: str
) -> tuple[int, int] | None:
    found = counts(stack, workflow, server, path)
    return found if found != (1, 1) else None


def latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest record of each execution (records repeat with a higher seq as actions settle)."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        known = found.get(record["execution_id"])
        if known is None or record["seq"] >= known["seq"]:
            found[record["execution_id"]] = record
    return found


def slack_workflow(
    name: str,
    url: str,
    trigger: dict[str, Any],
    message: str = "{workflow_name}: {task_name}",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "trigger": trigger,
        "action": {"type": "slack", "webhook_url": url, "message": message},
        **extra,
    }


def test_retries_stop_at_max_attempts_and_the_third_failure_escalates_to_slack(
    stack: Stack, slack: RecordingServer
) -> None:
    stack.apply(
        {
            "name": "Retry payments",
            "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "demo.*"}},
            "actions": [{"type": "retry", "delay_seconds": 0, "max_attempts": 2}],
        },
        {
            "name": "Escalate after 3 failures",
            "trigger": {"event": "task.failed", "conditions": {"failure_count_threshold": 3}},
            "actions": [
                {
                    "type": "slack",
                    "webhook_url": slack.url_for("/oncall"),
                    "message": "Task {task_name} failed {failure_count} times.",
                },
                {
                    "type": "webhook",
                    "url": slack.url_for("/incidents"),
                    "headers": {"Authorization": "Bearer e2e-incident-token"},
                    "secret": "e2e-signing-secret-0123456789",
                },
            ],
        },
    )
    stack.client.send_task("demo.tasks.always_fails", ("c-7",), task_id="t-doomed")

    [post] = slack.wait_for_requests(1, path="/oncall", timeout_seconds=60)
    assert post.json()["text"] == "Task demo.tasks.always_fails failed 3 times."
    [hook] = slack.wait_for_requests(1, path="/incidents", timeout_seconds=30)
    assert hook.headers["authorization"] == "Bearer e2e-incident-token"
    body = hook.json()
    assert body["schema"] == "flowguard.webhook/1"
    assert hook.headers["idempotency-key"].startswith(body["execution"]["execution_id"])
    runs = stack.runs("demo.tasks.always_fails")
    assert len(runs) == 3
    assert {r["root_id"] for r in runs} == {"t-doomed"}

    def settled() -> dict[str, dict[str, Any]] | None:
        retries = latest(stack.records("retry-payments"))
        escalations = latest(stack.records("escalate-after-3-failures"))
        done = len(retries) == 3 and any(
            all(a["status"] == "succeeded" for a in r["actions"]) for r in escalations.values()
        )
        # Each retry that ran settles from its task's own failure.
        done = done and all(
            r["actions"][0]["status"] in ("failed", "skipped") for r in retries.values()
        )
        return {**retries, **escalations} if done else None

    executions = wait_until(settled, timeout_seconds=30, what="3 retry executions, 1 escalation")
    retries = sorted(
        (r for r in executions.values() if r["workflow"]["id"] == "retry-payments"),
        key=lambda r: r["task"]["failure_count"],
    )
    # The two retries ran and failed again: the remediation did not work, and the log says so.
    assert [r["outcome"] for r in retries] == ["failure", "failure", "skipped"]
    for retry in retries[:2]:
        assert retry["actions"][0]["detail"].startswith("the retried task failed on w1@flowguard")
        assert retry["actions"][0]["detail"].endswith("KeyError('customer_id')")
    assert retries[2]["reason"] == "max_attempts_reached"
    assert [r["actions"][0]["attempt"] for r in retries[:2]] == [1, 2]
    [escalation] = [r for r in executions.values() if r["workflow"]["id"] != "retry-payments"]
    assert escalation["task"]["failure_count"] == 3
    assert [a["status"] for a in escalation["actions"]] == ["succeeded", "succeeded"]
    logged = json.dumps(stack.log.poll())
    for secret in ("/oncall", "/incidents", "e2e-incident-token", "e2e-signing-secret"):
        assert secret not in logged


ORPHAN_RECOVERY = "recover-orphaned-tasks"


def orphan_workflow(delay_seconds: float) -> dict[str, Any]:
    return {
        "name": "Recover orphaned tasks",
        "trigger": {"event": "task.orphaned"},
        "action": {"type": "retry", "delay_seconds": delay_seconds, "max_attempts": 1},
    }


def kill_while_running(stack: Stack, task_id: str) -> None:
    """SIGKILL the stack's Celery worker once ``task_id`` is known to run on it, and w1 known to
    flowguard.

    Known to have started: Celery reports task-started; a task killed before that is not an
    orphan but a task never reported running (its message is redelivered by Redis). And the
    worker known: liveness is judged on heartbeats, and one killed before its first heartbeat
    reached Kafka is never tracked (an open gap, see #6).
    """
    task_event(stack, "task.started", task_id)
    wait_until(
        lambda: worker_events(stack, "w1@flowguard"), timeout_seconds=30,
        what="a heartbeat of w1 in Kafka",
    )  # fmt: skip
    stack.celery.kill()


def first_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision (seq 0) of the only execution among ``records``."""
    assert len({r["execution_id"] for r in records}) == 1, records
    return min(records, key=lambda r: r["seq"])


def test_a_sigkilled_workers_running_task_is_orphaned_and_retried_once(stack: Stack) -> None:
    stack.apply(orphan_workflow(delay_seconds=0))
    stack.client.send_task("demo.tasks.slow", (20,), task_id="t-orphan")
    kill_while_running(stack, "t-orphan")
    rescuer = start_worker(celery_worker(stack.tmp, stack.broker, name="w2"))
    stack.extra.append(rescuer)

    [record] = wait_until(
        lambda: list(latest(stack.records(ORPHAN_RECOVERY)).values()),
        timeout_seconds=30, what="the orphan's execution",
    )  # fmt: skip
    assert record["trigger"]["event"] == "task.orphaned"
    assert record["task"]["id"] == "t-orphan"
    # Within the heartbeat expiry plus 2 s, counted from w1's last heartbeat (what it was last
    # seen by): the decision's own record is on the log by then. Nothing of w1 comes after the
    # kill, so its events in Kafka now are all there will be.
    beats = worker_events(stack, "w1@flowguard")
    last_seen = max(e["timestamp"] for e in beats)
    decided = first_record(stack.records(ORPHAN_RECOVERY))
    late = from_iso(decided["recorded_at"]) - last_seen
    log.info("orphan recorded %.3fs after w1's last heartbeat", late)
    assert late <= expiry_seconds(beats) + 2, f"orphaned {late:.2f}s after w1's last heartbeat"
    retry_id = record["actions"][0]["retry_task_id"]
    runs = wait_until(
        lambda: [r for r in stack.runs("demo.tasks.slow") if r["task_id"] == retry_id],
        timeout_seconds=30, what="the orphan's retry to start on the other worker",
    )  # fmt: skip
    assert runs[0]["hostname"] == "w2@flowguard"
    assert runs[0]["args"] == [20]
    assert [r["task_id"] for r in stack.runs("demo.tasks.slow")] == ["t-orphan", retry_id]


#: Late acks, and Redis gives an unacknowledged message to another worker this long after it
#: was delivered: longer than the orphan takes to be detected (so flowguard sees the orphan
#: first), longer than the task runs (so a live worker's run is never handed out again).
REDELIVERY_SECONDS = 10
LATE_ACKS: dict[str, Any] = {"acks_late": True, "visibility_seconds": REDELIVERY_SECONDS}


@pytest.mark.parametrize("celery_options", [LATE_ACKS], ids=["acks_late"])
def test_an_orphan_celery_redelivers_before_its_retry_is_due_is_not_retried(stack: Stack) -> None:
    delay_seconds = 20
    stack.apply(orphan_workflow(delay_seconds=delay_seconds))
    stack.client.send_task("demo.tasks.slow", (3,), task_id="t-redelivered")
    kill_while_running(stack, "t-redelivered")
    stack.extra.append(start_worker(celery_worker(stack.tmp, stack.broker, "w2", **LATE_ACKS)))

    [decided] = wait_until(
        lambda: stack.records(ORPHAN_RECOVERY), timeout_seconds=30,
        what="the orphan's execution",
    )  # fmt: skip
    assert decided["trigger"]["event"] == "task.orphaned"
    assert decided["task"]["id"] == "t-redelivered"
    [action] = decided["actions"]
    assert action["status"] == "scheduled"
    due_at = from_iso(action["due_at"])
    # Celery gives the unacknowledged message to w2, which runs it to the end before the retry
    # is due: same task id, no new task-sent.
    succeeded = task_event(stack, "task.succeeded", "t-redelivered")
    assert succeeded["hostname"] == "w2@flowguard"
    assert succeeded["timestamp"] < due_at - 2, "redelivered too late to test the re-check"

    def settled() -> dict[str, Any] | None:
        found = latest(stack.records(ORPHAN_RECOVERY))
        [record] = found.values()
        return record if record["seq"] > decided["seq"] else None

    record = wait_until(
        settled, timeout_seconds=due_at - from_iso(decided["recorded_at"]) + 10,
        what="the delayed retry to be settled when due",
    )  # fmt: skip
    assert (record["outcome"], record["reason"]) == ("skipped", "recovered")
    assert record["actions"][0]["status"] == "skipped"
    # The real workers ran it twice: the killed run and Celery's redelivery, never the retry.
    assert [(r["task_id"], r["hostname"]) for r in stack.runs("demo.tasks.slow")] == [
        ("t-redelivered", "w1@flowguard"),
        ("t-redelivered", "w2@flowguard"),
    ]
    stays(
        lambda: stack.runs("demo.tasks.slow")[2:], 3, what="a third run of the task",
    )  # fmt: skip


def test_execution_time_exceeded_and_worker_offline_fire_once(
    stack: Stack, slack: RecordingServer
) -> None:
    stack.apply(
        slack_workflow(
            "Too slow", slack.url_for("/slow"),
            {"event": "task.execution_time_exceeded", "threshold_seconds": 2},
        ),
        slack_workflow(
            "Worker gone", slack.url_for("/gone"), {"event": "worker.offline"},
            message="{workflow_name}: {worker}",
        ),
    )  # fmt: skip
    stack.client.send_task("demo.tasks.slow", (4,), task_id="t-slow")
    [post] = slack.wait_for_requests(1, path="/slow", timeout_seconds=30)
    assert post.json()["text"] == "Too slow: demo.tasks.slow"
    wait_until(
        lambda: any(
            e.get("kind") == "task.succeeded" and e["task_id"] == "t-slow"
            for e in stack.events.poll()
        ),
        timeout_seconds=30, what="t-slow to finish",
    )  # fmt: skip

    assert stack.celery.stop() is not None  # warm shutdown: worker-offline
    [gone] = slack.wait_for_requests(1, path="/gone", timeout_seconds=30)
    assert gone.json()["text"] == "Worker gone: w1@flowguard"
    offline = wait_until(
        lambda: list(latest(stack.records("worker-gone")).values()),
        timeout_seconds=30, what="the worker.offline execution",
    )  # fmt: skip
    assert [r["worker"]["hostname"] for r in offline] == ["w1@flowguard"]
    # Once: not again when its heartbeats, silent since the goodbye, pass their expiry.
    beats = worker_events(stack, "w1@flowguard")
    expires_at = max(e["timestamp"] for e in beats) + expiry_seconds(beats)
    stays(
        lambda: more_than_one(stack, "worker-gone", slack, "/gone"),
        max(expires_at + 2 - time.time(), 1), what="a second worker.offline execution",
    )  # fmt: skip
    assert len(latest(stack.records("too-slow"))) == 1
    assert len(slack.requests(path="/slow")) == 1


def test_the_breaker_runs_50_of_60_failures_in_a_minute_and_notifies_once(
    stack: Stack, slack: RecordingServer
) -> None:
    stack.apply(
        slack_workflow(
            "Payment failures", slack.url_for("/payments"),
            {"event": "task.failed", "conditions": {"task_name_pattern": "*.always_fails"}},
            circuit_breaker={"max_executions": 50, "time_window_seconds": 60},
        )
    )  # fmt: skip
    for n in range(60):
        stack.client.send_task("demo.tasks.always_fails", (f"c-{n}",), task_id=f"t-pay-{n}")

    def all_decided() -> dict[str, dict[str, Any]] | None:
        found = latest(stack.records("payment-failures"))
        return found if len(found) == 60 else None

    executions = wait_until(all_decided, timeout_seconds=90, what="60 executions")
    outcomes = [r["outcome"] for r in executions.values()]
    assert outcomes.count("skipped") == 10
    assert {r["reason"] for r in executions.values() if r["outcome"] == "skipped"} == {
        "circuit_open"
    }
    posts = slack.wait_for_requests(51, path="/payments", timeout_seconds=60)
    opened = [p for p in posts if p.json()["text"].startswith("Circuit opened")]
    assert len(opened) == 1
    assert len(posts) == 51
    # And nothing more comes: no 61st execution, no second notice, no 52nd post.
    stays(
        lambda: (found := counts(stack, "payment-failures", slack, "/payments")) != (60, 51)
        and found,
        3, what="an execution or a post past the 60 failures (executions, posts)",
    )  # fmt: skip
