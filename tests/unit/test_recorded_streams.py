"""The recorded Celery streams say what tests/data/streams/README.md says happened.

The replay acceptance tests trust these files; this checks the files themselves:
every line is a raw Celery event, and each scenario holds the facts its
description states (ids, counts, exceptions, hosts, arrival order).
"""

from __future__ import annotations

import ast
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

STREAMS = Path(__file__).resolve().parents[2] / "tests" / "data" / "streams"
SCENARIOS = {
    "basic",
    "celery_retry",
    "flaky_chain",
    "long_running",
    "worker_sigkill",
    "worker_sigkill_redelivered",
    "worker_graceful_stop",
    "worker_warm_shutdown_busy",
    "worker_sigterm_group",
    "burst_failures",
    "stuck_prefetched",
}
W1, W2 = "w1@flowguard", "w2@flowguard"
OUTCOMES = ("task-succeeded", "task-failed")

Event = dict[str, Any]


@cache
def load(name: str) -> tuple[Event, ...]:
    return tuple(json.loads(line) for line in (STREAMS / f"{name}.jsonl").read_text().splitlines())


def of(events: tuple[Event, ...], kind: str, **fields: Any) -> list[Event]:
    return [
        e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
    ]


def position(events: tuple[Event, ...], kind: str, **fields: Any) -> int:
    """Index of the only event of this kind with these fields."""
    (found,) = [
        i
        for i, e in enumerate(events)
        if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
    ]
    return found


def test_every_scenario_is_recorded_and_described() -> None:
    assert {p.stem for p in STREAMS.glob("*.jsonl")} == SCENARIOS
    described = (STREAMS / "README.md").read_text()
    assert all(f"## {name}.jsonl" in described for name in SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_line_is_a_raw_celery_event(name: str) -> None:
    lines = (STREAMS / f"{name}.jsonl").read_text().splitlines()
    assert 0 < len(lines) <= 1000
    for line in lines:
        event = json.loads(line)
        assert isinstance(event, dict)
        assert isinstance(event["type"], str)
        assert event["type"].startswith(("task-", "worker-"))
        assert isinstance(event["timestamp"], float)
        assert isinstance(event["hostname"], str)
        assert isinstance(event["clock"], int)
        if event["type"].startswith("task-"):
            assert isinstance(event["uuid"], str)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_only_sent_and_received_carry_the_task_and_only_sent_the_queue(name: str) -> None:
    for event in load(name):
        kind = event["type"]
        assert ("queue" in event) == ("routing_key" in event) == (kind == "task-sent")
        carries_task = {"name", "args", "kwargs", "root_id", "parent_id"} <= event.keys()
        assert carries_task == (kind in ("task-sent", "task-received")), event
        if kind in ("task-started", "task-succeeded", "task-failed", "task-retried"):
            assert "name" not in event
            assert "args" not in event


BASIC = {
    # id: (task name, queue, args, kwargs, outcome, exception)
    "basic-add": ("demo.tasks.add", "celery", "(2, 3)", "{}", "task-succeeded", None),
    "basic-always-fails": (
        "demo.tasks.always_fails",
        "celery",
        "('c-1',)",
        "{}",
        "task-failed",
        "KeyError('customer_id')",
    ),
    "basic-payment": (
        "payments.process_payment",
        "priority-high",
        "(100, 'card-4242')",
        "{}",
        "task-failed",
        "ConnectionError('payment gateway timeout for card-4242')",
    ),
    "basic-email": (
        "myapp.tasks.send_email",
        "email",
        "('a@example.com', 'hi')",
        "{'reply_to': 'b@example.com'}",
        "task-failed",
        "SMTPException('554 rejected: a@example.com')",
    ),
    "basic-email-ok": (
        "myapp.tasks.send_email",
        "email",
        "('ops@example.org', 'weekly report')",
        "{}",
        "task-succeeded",
        None,
    ),
    "basic-priority": ("demo.tasks.add", "priority-high", "(1, 1)", "{}", "task-succeeded", None),
    "basic-quote": (
        "demo.tasks.greet",
        "celery",
        "('Sean O\\'Brien',)",
        "{'punctuation': '?'}",
        "task-succeeded",
        None,
    ),
}


@pytest.mark.parametrize("task_id", sorted(BASIC))
def test_basic_each_task_ran_once_with_the_stated_outcome(task_id: str) -> None:
    name, queue, args, kwargs, outcome, exception = BASIC[task_id]
    events = load("basic")
    (sent,) = of(events, "task-sent", uuid=task_id)
    (received,) = of(events, "task-received", uuid=task_id)
    assert (sent["name"], sent["queue"], sent["args"], sent["kwargs"]) == (
        name,
        queue,
        args,
        kwargs,
    )
    assert (received["name"], received["args"], received["kwargs"]) == (name, args, kwargs)
    assert len(of(events, "task-started", uuid=task_id, hostname=W1)) == 1
    (done,) = [e for e in events if e["type"] in OUTCOMES and e["uuid"] == task_id]
    assert done["type"] == outcome
    assert done.get("exception") == exception


def test_basic_long_args_are_cut_and_do_not_parse() -> None:
    events = load("basic")
    (sent,) = of(events, "task-sent", uuid="basic-bulk")
    (received,) = of(events, "task-received", uuid="basic-bulk")
    assert sent["args"] == received["args"]
    assert len(sent["args"]) == 1035
    assert sent["args"].startswith("([0, 1, 2, 3,")
    assert sent["args"].endswith("22..., ...],)")
    with pytest.raises(SyntaxError):
        ast.literal_eval(sent["args"])
    (failed,) = of(events, "task-failed", uuid="basic-bulk")
    assert failed["exception"] == "ValueError('bulk of 400 items refused')"


def test_basic_totals_and_the_warm_stop() -> None:
    events = load("basic")
    assert len(of(events, "task-failed")) == 4
    assert len(of(events, "task-succeeded")) == 4
    assert len(of(events, "worker-offline", hostname=W1)) == 1
    assert of(events, "worker-heartbeat") == []


RETRY_EXCEPTIONS = {
    "retry-exhausted": ["TimeoutError('upstream timed out (1)')"] * 2,
    "retry-succeeds": ["ConnectionError('reset by peer')"],
    "retry-no-exc": ["None", "None"],
}


@pytest.mark.parametrize("task_id", sorted(RETRY_EXCEPTIONS))
def test_celery_retry_resends_the_same_id_from_the_pool_child(task_id: str) -> None:
    events = load("celery_retry")
    retried = of(events, "task-retried", uuid=task_id, hostname=W1)
    assert [e["exception"] for e in retried] == RETRY_EXCEPTIONS[task_id]
    sent = of(events, "task-sent", uuid=task_id)
    assert [e["retries"] for e in sent] == list(range(len(retried) + 1))
    first, *again = sent
    assert (first["parent_id"], first["eta"]) == (None, None)
    for resent in again:
        assert resent["hostname"].startswith("gen")
        assert resent["hostname"] != first["hostname"]
        assert resent["root_id"] == resent["parent_id"] == task_id
        assert datetime.fromisoformat(resent["eta"]).tzinfo is not None
    assert len(of(events, "task-received", uuid=task_id)) == len(sent)
    assert len(of(events, "task-started", uuid=task_id)) == len(sent)


def test_celery_retry_final_outcomes() -> None:
    events = load("celery_retry")
    (exhausted,) = of(events, "task-failed", uuid="retry-exhausted")
    assert exhausted["exception"] == "TimeoutError('upstream timed out (1)')"
    (no_exc,) = of(events, "task-failed", uuid="retry-no-exc")
    assert no_exc["exception"] == (
        "MaxRetriesExceededError(\"Can't retry demo.tasks.self_retry[retry-no-exc] "
        "args:(2,) kwargs:{'with_exc': False}\")"
    )
    assert len(of(events, "task-succeeded", uuid="retry-succeeds")) == 1
    assert of(events, "task-failed", uuid="retry-succeeds") == []
    # The final attempt fails without a task-retried: its task-failed comes after the last one.
    last_retried = max(i for i, e in enumerate(events) if e["type"] == "task-retried")
    assert position(events, "task-failed", uuid="retry-exhausted") > last_retried


@pytest.mark.parametrize("task_id", sorted(RETRY_EXCEPTIONS))
def test_celery_retry_received_arrives_before_sent(task_id: str) -> None:
    events = load("celery_retry")
    assert position(events, "task-received", uuid=task_id, retries=1) < position(
        events, "task-sent", uuid=task_id, retries=1
    )


CHAIN = {
    # id: (parent_id, outcome, exception)
    "chain-1": (
        None,
        "task-failed",
        "ConnectionError('Connection refused (call 1 of order 1001)')",
    ),
    "chain-2": (
        "chain-1",
        "task-failed",
        "ConnectionError('Connection refused (call 2 of order 1001)')",
    ),
    "chain-3": ("chain-2", "task-succeeded", None),
}


def test_flaky_chain_links_new_ids_by_root_and_parent() -> None:
    events = load("flaky_chain")
    for task_id, (parent, outcome, exception) in CHAIN.items():
        for kind in ("task-sent", "task-received"):
            (e,) = of(events, kind, uuid=task_id)
            assert (e["name"], e["args"], e["kwargs"]) == (
                "demo.tasks.flaky_network",
                "(1001,)",
                "{'fail_times': 2, 'key': 'chain'}",
            )
            assert (e["root_id"], e["parent_id"], e["retries"]) == ("chain-1", parent, 0)
        (done,) = [e for e in events if e["type"] in OUTCOMES and e["uuid"] == task_id]
        assert (done["type"], done.get("exception")) == (outcome, exception)
    # Each retry was sent after its parent's failure arrived.
    assert position(events, "task-failed", uuid="chain-1") < position(
        events, "task-sent", uuid="chain-2"
    )
    assert position(events, "task-failed", uuid="chain-2") < position(
        events, "task-sent", uuid="chain-3"
    )
    assert len(of(events, "task-failed")) == 2


def test_long_running_heartbeats_flow_while_the_long_task_runs() -> None:
    events = load("long_running")
    runtimes: dict[str, tuple[float, float]] = {}
    for task_id in ("long-6s", "long-1s"):
        (started,) = of(events, "task-started", uuid=task_id, hostname=W1)
        (succeeded,) = of(events, "task-succeeded", uuid=task_id, hostname=W1)
        runtimes[task_id] = (succeeded["timestamp"] - started["timestamp"], succeeded["runtime"])
    (by_stamps, by_runtime) = runtimes["long-6s"]
    assert 5.9 < by_stamps < 6.5
    assert 6 <= by_runtime < 6.5
    (by_stamps, by_runtime) = runtimes["long-1s"]
    assert 0.9 < by_stamps < 1.5
    assert 1 <= by_runtime < 1.5
    beats = of(events, "worker-heartbeat", hostname=W1)
    assert len(beats) == 3
    assert all(b["freq"] == 2.0 and b["active"] == 1 for b in beats)
    assert len(of(events, "worker-offline", hostname=W1)) == 1


def test_worker_sigkill_leaves_a_started_task_and_a_silent_worker() -> None:
    events = load("worker_sigkill")
    (sent,) = of(events, "task-sent", uuid="killed-task")
    assert (sent["name"], sent["queue"], sent["args"]) == (
        "demo.tasks.slow_exclusive",
        "slowq",
        "(30,)",
    )
    started = position(events, "task-started", uuid="killed-task", hostname=W1)
    assert [e for e in events if e.get("uuid") == "killed-task" and e["type"] in OUTCOMES] == []
    assert of(events, "worker-offline", hostname=W1) == []
    assert of(events, "task-received", uuid="killed-task", hostname=W2) == []
    w1_events = [i for i, e in enumerate(events) if e["hostname"] == W1]
    last_w1 = events[w1_events[-1]]
    assert last_w1["type"] == "worker-heartbeat"
    assert [events[i]["type"] for i in w1_events if i > started] == ["worker-heartbeat"] * 2
    # w2 goes on for 8 s after w1's last word, then stops warm.
    after = events[w1_events[-1] + 1 :]
    assert {e["hostname"] for e in after} == {W2}
    assert len(of(after, "worker-heartbeat")) >= 4
    assert events[-1]["type"] == "worker-offline"
    assert events[-1]["timestamp"] - last_w1["timestamp"] >= 8


def test_worker_sigkill_redelivered_runs_the_same_id_on_the_restarted_worker() -> None:
    events = load("worker_sigkill_redelivered")
    task = "redelivered-task"
    assert len(of(events, "task-sent", uuid=task)) == 1
    first, second = of(events, "task-received", uuid=task, hostname=W1)
    assert of(events, "task-failed", uuid=task) == []
    (succeeded,) = of(events, "task-succeeded", uuid=task, hostname=W1)
    online_1, online_2 = of(events, "worker-online", hostname=W1)
    # Same host name, a new process: only the pid tells the two runs apart.
    assert online_1["pid"] == first["pid"] != second["pid"] == online_2["pid"] == succeeded["pid"]
    assert online_2["clock"] == 1
    assert {k: v for k, v in first.items() if k not in ("pid", "timestamp", "local_received")} == {
        k: v for k, v in second.items() if k not in ("pid", "timestamp", "local_received")
    }
    # Between the kill and the restart, nothing from w1 for at least 8 s.
    restart = events.index(online_2)
    w1_before = [e for e in events[:restart] if e["hostname"] == W1]
    assert w1_before[-1]["type"] == "worker-heartbeat"
    assert online_2["timestamp"] - w1_before[-1]["timestamp"] >= 8
    assert of(events[:restart], "worker-offline") == []
    assert len(of(events, "task-started", uuid=task, pid=second["pid"])) == 1


def test_worker_graceful_stop_ends_with_one_worker_offline() -> None:
    events = load("worker_graceful_stop")
    for i in range(3):
        (succeeded,) = of(events, "task-succeeded", uuid=f"graceful-{i}", hostname=W1)
        assert succeeded["result"] == str(2 * i)
    assert of(events, "task-failed") == []
    (offline,) = of(events, "worker-offline", hostname=W1)
    assert offline is events[-1]
    assert offline["active"] == 0


def test_worker_warm_shutdown_busy_announces_offline_before_its_task_finishes() -> None:
    events = load("worker_warm_shutdown_busy")
    (offline,) = of(events, "worker-offline", hostname=W1)
    assert offline["active"] == 1
    started = position(events, "task-started", uuid="busy-slow", hostname=W1)
    succeeded = position(events, "task-succeeded", uuid="busy-slow", hostname=W1)
    assert started < events.index(offline) < succeeded
    assert of(events, "task-failed") == []


def test_worker_sigterm_group_fails_the_running_task_after_offline() -> None:
    events = load("worker_sigterm_group")
    assert len(of(events, "task-succeeded", uuid="group-add")) == 1
    (offline,) = of(events, "worker-offline", hostname=W1)
    (failed,) = of(events, "task-failed", uuid="group-slow", hostname=W1)
    assert events.index(offline) < events.index(failed)
    assert failed["exception"] == "ExceptionWithTraceback()"
    assert "WorkerLostError: Worker exited prematurely: signal 15 (SIGTERM)" in failed["traceback"]


def test_burst_failures_sixty_distinct_tasks_each_fail_once() -> None:
    events = load("burst_failures")
    failed = of(events, "task-failed")
    assert sorted(e["uuid"] for e in failed) == [f"burst-{i:02d}" for i in range(60)]
    assert {e["exception"] for e in failed} == {"KeyError('customer_id')"}
    assert {e["hostname"] for e in failed} == {W1}
    stamps = [e["timestamp"] for e in failed]
    assert max(stamps) - min(stamps) < 5
    sent = {e["uuid"]: e["args"] for e in of(events, "task-sent")}
    assert sent == {f"burst-{i:02d}": f"('c-{i}',)" for i in range(60)}


def test_stuck_prefetched_the_add_waits_received_behind_a_full_pool() -> None:
    events = load("stuck_prefetched")
    busy_started = [position(events, "task-started", uuid=f"busy-{i}") for i in (1, 2)]
    received = position(events, "task-received", uuid="prefetched-add")
    started = position(events, "task-started", uuid="prefetched-add")
    finished = [position(events, "task-succeeded", uuid=f"busy-{i}") for i in (1, 2)]
    assert max(busy_started) < received < min(finished) < started
    wait = events[started]["timestamp"] - events[received]["timestamp"]
    assert 3.5 < wait < 4.5
    sent = position(events, "task-sent", uuid="prefetched-add")
    assert events[received]["timestamp"] - events[sent]["timestamp"] < 0.5
    assert len(of(events, "task-started", uuid="prefetched-add")) == 1
