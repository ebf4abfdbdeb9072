"""flowguard/celery_wire/events.snapshot_events: ``inspect()`` replies -> task.snapshot records."""

from __future__ import annotations

from typing import Any

import pytest

from flowguard.celery_wire.events import snapshot_events

NOW = 1_760_000_000.0


def info(task_id: Any = "t1", **extra: Any) -> dict[str, Any]:
    """One entry as ``Request.info(safe=True)`` reports it."""
    return {
        "id": task_id,
        "name": "demo.tasks.slow",
        "args": "(1.5,)",
        "kwargs": "{}",
        "type": "demo.tasks.slow",
        "hostname": "w1@flowguard",
        "time_start": 12345.6,  # the worker's monotonic clock: not a time of day
        "acknowledged": True,
        "delivery_info": {
            "exchange": "",
            "routing_key": "email",
            "priority": 0,
            "redelivered": False,
        },
        "worker_pid": 4242,
        **extra,
    }


def test_active_tasks_become_snapshots_timed_when_taken() -> None:
    events, problems = snapshot_events(
        {"w1@flowguard": [info("t1")], "w2@flowguard": [info("t2", args=(1, "a"))]},
        "active", "prod", NOW,
    )  # fmt: skip
    assert problems == []
    first, second = events
    assert (first.kind, first.cluster, first.task_id, first.hostname, first.state) == (
        "task.snapshot", "prod", "t1", "w1@flowguard", "active"
    )  # fmt: skip
    assert (first.name, first.args, first.kwargs, first.routing_key) == (
        "demo.tasks.slow", "(1.5,)", "{}", "email"
    )  # fmt: skip
    assert first.timestamp == NOW
    assert first.time_start is None, "Celery's time_start is monotonic, never used as a time"
    assert first.root_id is None, "inspect() does not report the root: keyed by task id"
    assert second.args == "(1, 'a')", "non-text args are kept as their repr"


@pytest.mark.parametrize("replies", [None, {}, {"w1": []}])
def test_no_replies_no_snapshots(replies: Any) -> None:
    assert snapshot_events(replies, "reserved", "prod", NOW) == ([], [])


def test_a_reply_that_is_not_a_mapping_is_reported() -> None:
    events, problems = snapshot_events(["w1"], "active", "prod", NOW)
    assert events == []
    assert problems == ["inspect active: expected a mapping of workers, got <class 'list'>"]


def test_malformed_entries_are_reported_and_the_others_kept() -> None:
    replies = {
        "w1": [info("ok-1"), "garbage", info(None), info("bad-name", name=42)],
        "w2": info("ok-2"),  # a single entry instead of a list
    }
    events, problems = snapshot_events(replies, "reserved", "prod", NOW)
    assert [e.task_id for e in events] == ["ok-1", "ok-2"]
    assert all(e.state == "reserved" for e in events)
    assert problems[:2] == [
        "inspect reserved from w1: entry without a task id",
        "inspect reserved from w1: entry without a task id",
    ]
    assert problems[2].startswith("inspect reserved from w1: name: Input should be a valid string")
    assert len(problems) == 3


def test_delivery_info_may_be_missing_or_odd() -> None:
    events, _ = snapshot_events(
        {"w1": [info("a", delivery_info=None), info("b", delivery_info="x")]}, "active", "c", NOW
    )
    assert [e.routing_key for e in events] == [None, None]
