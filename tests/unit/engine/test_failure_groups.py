"""Failure groups in the decision core: the ``fingerprint`` condition, the retry action's
``never_retry`` list, and the fingerprint on the execution record (old records load without)."""

from __future__ import annotations

from typing import Any

import pytest

from flowguard.engine.documents import parse_workflow
from flowguard.engine.fingerprint import fingerprint
from flowguard.engine.lint import lint
from flowguard.errors import WorkflowInvalid
from tests import celery_events as ev
from tests.unit.engine.test_core import T0, engine, feed
from topics.execution import TaskRef

ORDER_17 = "KeyError(\"'order-17'\")"
ORDER_99 = "KeyError(\"'order-99'\")"
#: app.charge failing with KeyError 'order-<n>': the group the workflows below name.
GROUP = fingerprint("app.charge", "KeyError", "\"'order-17'\"")


def _failures() -> list[dict[str, Any]]:
    return [
        *ev.run("t1", T0, "app.charge", exception=ORDER_17),
        *ev.run("t2", T0 + 10, "app.charge", exception=ORDER_99),
        *ev.run("t3", T0 + 20, "app.charge", exception="ValueError(\"'order-17'\")"),
        *ev.run("t4", T0 + 30, "app.refund", exception=ORDER_17),
    ]


def test_one_group_across_ids_and_the_record_carries_it() -> None:
    assert GROUP is not None
    eng = engine({"name": "see all", "trigger": {"event": "task.failed"}, "action": _notify()})
    records = feed(eng, _failures()).records
    prints = [r.task.fingerprint for r in records if r.task is not None]
    assert len(prints) == 4
    assert prints[0] == prints[1] == GROUP, "order-17 and order-99 are one failure"
    assert len(set(prints)) == 3, "another exception type, another task: other groups"


def test_the_fingerprint_condition_matches_its_group_only() -> None:
    doc = {
        "name": "order bug",
        "trigger": {"event": "task.failed", "conditions": {"fingerprint": GROUP}},
        "action": _notify(),
    }
    records = feed(engine(doc), _failures()).records
    assert [r.task.id for r in records if r.task is not None] == ["t1", "t2"]
    assert all(c.name == "fingerprint" and c.value == GROUP for c in records[0].conditions)


def test_never_retry_skips_the_retry_with_the_reason_and_retries_the_rest() -> None:
    doc = {
        "name": "retry charges",
        "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "app.charge"}},
        "action": {"type": "retry", "delay_seconds": 0, "max_attempts": 3, "never_retry": [GROUP]},
    }
    out = feed(engine(doc), _failures())
    by_task = {r.task.id: r for r in out.records if r.task is not None}
    for task_id in ("t1", "t2"):
        (action,) = by_task[task_id].actions
        assert (action.type, action.status) == ("retry", "skipped")
        assert action.detail == (
            f"never_retry: failures with fingerprint {GROUP} are on this workflow's "
            "never-retry list"
        )
    (other,) = by_task["t3"].actions
    assert other.status == "planned"
    assert [c.original_task_id for c in out.commands] == ["t3"], "only t3 was sent"


def test_bad_fingerprints_are_refused_naming_the_field() -> None:
    base = {"name": "x", "action": _notify()}
    cases = [
        ({"event": "task.failed", "conditions": {"fingerprint": "KeyError"}}, "fingerprint"),
        ({"event": "task.orphaned", "conditions": {"fingerprint": GROUP}}, "does not apply"),
    ]
    for trigger, needle in cases:
        with pytest.raises(WorkflowInvalid) as info:
            parse_workflow({**base, "trigger": trigger}, source="test")
        assert needle in str(info.value)
    bad_list = {
        **base,
        "trigger": {"event": "task.failed"},
        "action": {"type": "retry", "never_retry": ["nope"]},
    }
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(bad_list, source="test")
    assert "never_retry" in str(info.value)


def test_records_written_before_fingerprints_still_load() -> None:
    old = {"cluster": "prod", "id": "t1", "root_id": "t1", "exception_type": "KeyError"}
    assert TaskRef.model_validate(old).fingerprint is None


def _notify() -> dict[str, Any]:
    return {"type": "webhook", "url": "https://hooks.example.com/x"}


def test_never_retry_on_a_trigger_without_errors_is_refused() -> None:
    doc = {
        "name": "x",
        "trigger": {"event": "task.orphaned"},
        "action": {"type": "retry", "never_retry": [GROUP]},
    }
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(doc, source="test")
    assert "never_retry only applies to task.failed" in str(info.value)


def test_lint_warns_when_the_retry_can_never_run() -> None:
    doc = {
        "name": "x",
        "trigger": {"event": "task.failed", "conditions": {"fingerprint": GROUP}},
        "action": {"type": "retry", "never_retry": [GROUP]},
        "circuit_breaker": {"max_executions": 5},
    }
    assert [(w.field, w.message) for w in lint(parse_workflow(doc, source="test"))] == [
        (
            "action.never_retry",
            f"lists {GROUP}, the fingerprint the trigger matches: this retry never runs",
        )
    ]
    other = {**doc, "action": {"type": "retry", "never_retry": ["0" * 16]}}
    assert lint(parse_workflow(other, source="test")) == []
