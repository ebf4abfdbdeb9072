"""The engine over synthetic Celery streams: detection, matching, deciding, together.

The recorded real streams are the acceptance tests (tests/unit/test_replay_recorded.py);
these pin single rules with streams small enough to reason about by hand.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.celery_wire.events import translate
from flowguard.engine.core import Engine, EngineConfig, Output
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from tests import celery_events as ev
from topics.record import iso

T0 = 1_760_000_000.0


def engine(*docs: dict[str, Any], **config: Any) -> Engine:
    published = [Published.of(parse_workflow(d, source="test")) for d in docs]
    return Engine(published, EngineConfig(**config))


def feed(eng: Engine, raws: list[dict[str, Any]]) -> Output:
    total = Output()
    for raw in raws:
        event = translate(raw, "prod")
        assert event is not None
        out = eng.feed(event)
        total.records += out.records
        total.commands += out.commands
        total.triggers += out.triggers
        total.notices += out.notices
        total.explanations += out.explanations
    return total


RETRY = {
    "name": "retry network",
    "trigger": {"event": "task.failed", "conditions": {"error_pattern": "ConnectionError"}},
    "action": {"type": "retry", "delay_seconds": 10, "max_attempts": 2},
    "circuit_breaker": {"max_executions": 50, "time_window_hours": 1},
}


def test_a_failure_plans_a_delayed_retry_with_the_same_args_in_the_same_chain() -> None:
    eng = engine(RETRY)
    out = feed(
        eng, ev.run("t1", T0, "app.charge", args="(42, 'Sean O\\'Brien')", kwargs="{'x': 1}")
    )
    (record,) = out.records
    assert record.outcome == "success"
    assert record.task is not None
    assert (record.task.name, record.task.args, record.task.queue) == (
        "app.charge",
        "(42, 'Sean O\\'Brien')",
        "celery",
    )
    assert record.task.exception_type == "ConnectionError"
    assert record.task.error_message == "refused"
    (action,) = record.actions
    assert (action.type, action.status, action.attempt, action.delay_seconds) == (
        "retry",
        "planned",
        1,
        10,
    )
    assert action.due_at == "2025-10-09T08:53:33.000000Z"
    assert out.commands == [], "a delayed retry waits until it is due"

    later = feed(eng, [ev.heartbeat(T0 + 20)])
    (resolved,) = later.records
    assert (resolved.execution_id, resolved.seq) == (record.execution_id, 1)
    (command,) = later.commands
    assert (command.name, command.args, command.kwargs, command.queue) == (
        "app.charge",
        "(42, 'Sean O\\'Brien')",
        "{'x': 1}",
        "celery",
    )
    assert (command.root_id, command.parent_id, command.original_task_id) == ("t1", "t1", "t1")
    assert command.task_id == action.retry_task_id


def test_conditions_that_do_not_hold_give_no_record_and_explain_says_why() -> None:
    eng = engine(RETRY, explain=True)
    out = feed(eng, ev.run("t1", T0, "app.charge", exception="KeyError('customer_id')"))
    assert out.records == []
    (why,) = out.explanations
    assert why.workflow_id == "retry-network"
    assert "error_pattern" in why.reason


def test_retries_stop_at_max_attempts_per_chain() -> None:
    eng = engine(RETRY)
    stream = ev.run("t1", T0, "app.charge")
    # flowguard's retries are new task ids in the same chain: root t1, parent the failed one
    stream += ev.run("r1", T0 + 20, "app.charge", root_id="t1", parent_id="t1")
    stream += ev.run("r2", T0 + 40, "app.charge", root_id="t1", parent_id="r1")
    out = feed(eng, stream)
    decisions = [r for r in out.records if r.seq == 0]
    assert [r.outcome for r in decisions] == ["success", "success", "skipped"]
    assert decisions[2].reason == "max_attempts_reached"
    assert [r.task.failure_count for r in decisions if r.task] == [1, 2, 3]
    assert [r.actions[0].attempt for r in decisions[:2]] == [1, 2]


def test_failure_count_threshold_counts_the_whole_chain_including_celery_retries() -> None:
    escalate = {
        "name": "escalate",
        "trigger": {"event": "task.failed", "conditions": {"failure_count_threshold": 3}},
        "action": {
            "type": "slack",
            "webhook_url": "https://hooks.example.com/x",
            "message": "{task_name} x{failure_count}",
        },
    }
    eng = engine(escalate)
    stream = [
        ev.sent("t1", T0, "app.sync"),
        ev.received("t1", T0 + 1, "app.sync"),
        ev.started("t1", T0 + 2),
        ev.retried("t1", T0 + 3),
        ev.received("t1", T0 + 5, "app.sync", retries=1),
        ev.started("t1", T0 + 6),
        ev.failed("t1", T0 + 7),
    ]
    out = feed(eng, stream)
    assert out.records == [], "two failures (one Celery retry, one final) are below 3"
    out = feed(eng, ev.run("r1", T0 + 20, "app.sync", root_id="t1", parent_id="t1"))
    (record,) = out.records
    assert record.task is not None
    assert record.task.failure_count == 3
    (notice,) = out.notices
    assert notice.text == "app.sync x3"


def test_breaker_sixty_failures_in_a_minute_against_fifty() -> None:
    wf = {**RETRY, "action": {"type": "retry", "delay_seconds": 0, "max_attempts": 1}}
    eng = engine(wf)
    stream = []
    for i in range(60):
        stream += [ev.received(f"t{i}", T0 + i, "app.charge"), ev.failed(f"t{i}", T0 + i + 0.5)]
    out = feed(eng, stream)
    assert [r.outcome for r in out.records].count("success") == 50
    skipped = [r for r in out.records if r.outcome == "skipped"]
    assert len(skipped) == 10
    assert {r.reason for r in skipped} == {"circuit_open"}
    opened = [r for r in out.records if r.circuit_breaker.transition == "opened"]
    assert len(opened) == 1
    assert opened[0].actions[0].type == "log"
    assert len(out.commands) == 50


def test_orphan_after_heartbeats_stop_and_not_when_redelivered() -> None:
    orphan = {
        "name": "Recover orphaned tasks",
        "trigger": {"event": "task.orphaned"},
        "action": {"type": "retry", "delay_seconds": 30, "max_attempts": 1},
    }
    eng = engine(orphan)
    stream = [
        ev.heartbeat(T0, kind="online"),
        ev.sent("t1", T0, "app.long"),
        ev.received("t1", T0 + 0.1, "app.long"),
        ev.started("t1", T0 + 0.2),
        ev.heartbeat(T0 + 2),
        ev.heartbeat(T0 + 2, hostname="celery@w2"),
    ]
    # w1 is SIGKILLed after T0+2: silence; w2 keeps beating, which moves event time on
    stream += [ev.heartbeat(T0 + 2 + 2 * k, hostname="celery@w2") for k in range(1, 5)]
    out = feed(eng, stream)
    (record,) = out.records
    assert record.trigger.event == "task.orphaned"
    assert record.trigger.at == "2025-10-09T08:53:26.000000Z", "expiry: last beat + 2 x 2s"
    assert record.task is not None
    assert record.task.worker == "celery@w1"
    # Celery redelivers it (acks_late) to w2, where it succeeds before the retry is due
    out = feed(
        eng,
        [
            ev.received("t1", T0 + 12, "app.long", hostname="celery@w2"),
            ev.started("t1", T0 + 12.5, hostname="celery@w2"),
            *(ev.heartbeat(T0 + 12 + 2 * k, hostname="celery@w2") for k in range(4)),
            ev.succeeded("t1", T0 + 20, hostname="celery@w2"),
            *(ev.heartbeat(T0 + 20 + 2 * k, hostname="celery@w2") for k in range(11)),
        ],
    )
    (resolved,) = out.records
    assert (resolved.seq, resolved.outcome, resolved.reason) == (1, "skipped", "recovered")
    assert out.commands == []


def test_worker_offline_fires_once_per_transition() -> None:
    wf = {
        "name": "worker down",
        "trigger": {"event": "worker.offline"},
        "action": {"type": "webhook", "url": "https://ops.example.com/hook"},
    }
    eng = engine(wf)
    out = feed(
        eng,
        [
            ev.heartbeat(T0, kind="online"),
            ev.heartbeat(T0 + 2),
            ev.heartbeat(T0 + 3, kind="offline"),
            ev.heartbeat(T0 + 3, kind="offline"),
            ev.heartbeat(T0 + 30, kind="online"),
            ev.heartbeat(T0 + 31, kind="offline"),
        ],
    )
    assert [r.trigger.event for r in out.records] == ["worker.offline", "worker.offline"]
    assert out.records[0].worker is not None
    assert out.records[0].worker.hostname == "celery@w1"
    assert len({r.execution_id for r in out.records}) == 2


def test_execution_time_exceeded_fires_once_per_attempt() -> None:
    wf = {
        "name": "slow",
        "trigger": {"event": "task.execution_time_exceeded", "threshold_seconds": 5},
        "action": {"type": "slack", "webhook_url": "https://hooks.example.com/x"},
    }
    eng = engine(wf)
    stream = [ev.received("t1", T0, "app.long"), ev.started("t1", T0 + 1)]
    stream += [ev.heartbeat(T0 + k) for k in range(2, 12)]
    stream += [ev.succeeded("t1", T0 + 12)]
    out = feed(eng, stream)
    (record,) = out.records
    assert record.trigger.at == "2025-10-09T08:53:26.000000Z"
    fast = feed(
        eng,
        [
            ev.received("t2", T0 + 20, "app.long"),
            ev.started("t2", T0 + 21),
            ev.succeeded("t2", T0 + 23),
            ev.heartbeat(T0 + 40),
        ],
    )
    assert fast.records == []


def test_truncated_args_fail_the_retry_with_a_reason_never_a_wrong_retry() -> None:
    wf = {**RETRY, "action": {"type": "retry", "delay_seconds": 0}}
    eng = engine(wf)
    out = feed(eng, ev.run("t1", T0, "app.bulk", args="([1, 2, 3, ...],)"))
    (record,) = out.records
    assert record.outcome == "failure"
    assert record.actions[0].status == "failed"
    assert "argsrepr" in record.actions[0].detail
    assert out.commands == []


def test_same_stream_same_bytes() -> None:
    stream = (
        ev.run("t1", T0, "app.charge")
        + ev.run("t2", T0 + 1, "app.charge")
        + [ev.heartbeat(T0 + 100)]
    )
    first = [r.to_json() for r in feed(engine(RETRY), stream).records]
    second = [r.to_json() for r in feed(engine(RETRY), stream).records]
    assert first == second
    assert len(first) == 4


@settings(max_examples=60, deadline=None)
@given(
    failures=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=30),
    max_attempts=st.integers(min_value=1, max_value=4),
)
def test_retry_budget_is_per_chain_across_interleaved_chains(
    failures: list[int], max_attempts: int
) -> None:
    """Failures of several chains, interleaved: each chain gets at most max_attempts retries,
    and every failure beyond that is skipped as max_attempts_reached."""
    wf = {
        **RETRY,
        "action": {"type": "retry", "delay_seconds": 0, "max_attempts": max_attempts},
        "circuit_breaker": {"max_executions": 10_000, "time_window_hours": 1},
    }
    eng = engine(wf)
    seen: dict[int, int] = {}
    stream = []
    for step, chain in enumerate(failures):
        n = seen.get(chain, 0)
        seen[chain] = n + 1
        task_id, root = f"c{chain}-{n}", f"c{chain}-0"
        parent = f"c{chain}-{n - 1}" if n else None
        ts = T0 + step
        stream += [
            ev.received(task_id, ts, "app.sync", root_id=root, parent_id=parent),
            ev.failed(task_id, ts + 0.5),
        ]
    out = feed(eng, stream)
    for chain, count in seen.items():
        records = [r for r in out.records if r.task and r.task.root_id == f"c{chain}-0"]
        assert [r.task.failure_count for r in records if r.task] == list(range(1, count + 1))
        assert sum(r.outcome == "success" for r in records) == min(count, max_attempts)
        assert all(r.reason == "max_attempts_reached" for r in records[max_attempts:])
    assert len(out.commands) == sum(min(c, max_attempts) for c in seen.values())


ESCALATE_AT_2 = {
    "name": "escalate",
    "trigger": {"event": "task.failed", "conditions": {"failure_count_threshold": 2}},
    "action": {"type": "slack", "webhook_url": "https://hooks.example.com/x", "message": "x"},
}


def test_a_finished_chain_that_failed_is_forgotten_after_its_retention() -> None:
    eng = engine(ESCALATE_AT_2, chain_retention_seconds=600)
    feed(eng, ev.run("t1", T0, "app.sync"))  # failed once, for good
    assert list(eng.chains) == ["prod/t1"]
    # Within the retention the chain is kept: a second failure is its second.
    early = engine(ESCALATE_AT_2, chain_retention_seconds=600)
    feed(early, ev.run("t1", T0, "app.sync"))
    out = feed(early, ev.run("r1", T0 + 500, "app.sync", root_id="t1", parent_id="t1"))
    assert [r.task.failure_count for r in out.records if r.task] == [2]

    # Past it (an event of another chain moves the clock): forgotten, counts start again.
    feed(eng, [ev.heartbeat(T0 + 700)])
    assert "prod/t1" not in eng.chains
    out = feed(eng, ev.run("r2", T0 + 800, "app.sync", root_id="t1", parent_id="t1"))
    assert out.records == [], "a failure after the retention is the chain's first again"
    assert eng.chains["prod/t1"].chain.failures == 1


def test_a_chain_with_a_task_still_running_or_an_event_since_is_not_forgotten() -> None:
    eng = engine(ESCALATE_AT_2, chain_retention_seconds=600)
    feed(eng, ev.run("t1", T0, "app.sync"))
    feed(eng, [ev.received("r1", T0 + 550, "app.sync", root_id="t1", parent_id="t1")])
    feed(eng, [ev.heartbeat(T0 + 5000)])
    assert "prod/t1" in eng.chains  # r1 was received and never finished


ORPHANS = {
    "name": "orphans",
    "trigger": {"event": "task.orphaned"},
    "action": {"type": "retry", "delay_seconds": 0, "max_attempts": 1},
}


def test_after_a_goodbye_a_task_is_orphaned_only_if_it_still_runs_after_the_grace() -> None:
    eng = engine(ORPHANS, offline_grace_seconds=30)
    stream = [
        *(ev.heartbeat(T0 + t) for t in range(0, 10, 2)),
        ev.sent("long", T0, "app.long"),
        ev.received("long", T0 + 0.1, "app.long"),
        ev.started("long", T0 + 0.2),
        ev.sent("quick", T0, "app.quick"),
        ev.received("quick", T0 + 0.1, "app.quick"),
        ev.started("quick", T0 + 0.2),
        ev.heartbeat(T0 + 10, kind="offline"),  # warm shutdown: goodbye first
        ev.succeeded("quick", T0 + 12),  # ... then it finishes what it runs
    ]
    assert feed(eng, stream).records == []
    # The worker comes back under the same name and starts a task of its own.
    again = [
        ev.heartbeat(T0 + 20, kind="online"),
        ev.sent("new", T0 + 21, "app.new"),
        ev.received("new", T0 + 21.1, "app.new"),
        ev.started("new", T0 + 21.2),
        *(ev.heartbeat(T0 + t) for t in range(22, 40, 2)),
    ]
    assert feed(eng, again).records == []
    out = feed(eng, [ev.heartbeat(T0 + 40.5)])  # the clock passes the grace's end (T0 + 40)
    orphaned = [r for r in out.records if r.trigger.event == "task.orphaned"]
    assert [r.task.id for r in orphaned if r.task] == ["long"]
    assert orphaned[0].trigger.at == iso(T0 + 40)
    assert "worker-offline event; still running 30s later" in orphaned[0].trigger.reason
