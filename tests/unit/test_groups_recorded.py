"""Failure groups on real recorded Celery streams (tests/data/streams/): which failures share a
fingerprint, the ``fingerprint`` condition, and ``never_retry`` refusing a group's retries."""

from __future__ import annotations

from flowguard.engine.fingerprint import fingerprint
from tests.unit.test_replay_recorded import ANY_FAILURE, run

PAYMENT = fingerprint(
    "payments.process_payment", "ConnectionError", "payment gateway timeout for card-1"
)
CUSTOMER_ID = fingerprint("demo.tasks.always_fails", "KeyError", "customer_id")
NOTIFY = {"type": "webhook", "url": "https://ops.example.com/hook"}


def test_a_chains_failures_with_other_numbers_share_one_fingerprint() -> None:
    records = run("flaky_chain", ANY_FAILURE)
    messages = [r.task.error_message for r in records if r.task]
    assert messages == [
        "Connection refused (call 1 of order 1001)",
        "Connection refused (call 2 of order 1001)",
    ]
    assert len({r.task.fingerprint for r in records if r.task}) == 1


def test_basic_four_failures_four_groups_and_the_condition_picks_one() -> None:
    every = run("basic", ANY_FAILURE)
    assert len({r.task.fingerprint for r in every if r.task}) == 4
    picked = run(
        "basic",
        {
            "name": "payment gateway",
            "trigger": {"event": "task.failed", "conditions": {"fingerprint": PAYMENT}},
            "action": {"type": "webhook", "url": "https://ops.example.com/pay"},
        },
    )
    assert [r.task.id for r in picked if r.task] == ["basic-payment"]


def test_burst_never_retry_refuses_every_retry_of_the_group_with_the_reason() -> None:
    records = run(
        "burst_failures",
        {
            "name": "retry all",
            "trigger": {"event": "task.failed"},
            "action": {"type": "retry", "delay_seconds": 60, "never_retry": [CUSTOMER_ID]},
            "circuit_breaker": {"max_executions": 1000, "time_window_hours": 1},
        },
    )
    assert len(records) == 60
    assert {(a.status, a.detail) for r in records for a in r.actions} == {
        (
            "skipped",
            f"never_retry: failures with fingerprint {CUSTOMER_ID} are on this workflow's "
            "never-retry list",
        )
    }


def test_an_orphan_failed_without_an_error_has_no_fingerprint() -> None:
    orphaned = {"name": "orphans", "trigger": {"event": "task.orphaned"}, "action": NOTIFY}
    (record,) = run("worker_sigkill", orphaned)
    assert record.task is not None
    assert record.task.fingerprint is None
    assert '"fingerprint":null' in record.to_json(), "on the wire as null, like every field"
