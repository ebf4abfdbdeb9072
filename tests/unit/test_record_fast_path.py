"""The engine builds execution records without validating them again (topics.record.built).

What it builds must be exactly what the validated model gives: the same JSON, for many
generated decisions (retries with and without delays, exhausted budgets, open breakers,
notifications, worker triggers, unparseable args, dry runs). And the ids it derives without
``uuid.UUID`` objects must be exactly uuid5's.
"""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.engine.breaker import BreakerState
from flowguard.engine.decision import _NAMESPACE, decide, derive_id
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from topics.execution import ConditionResult, ExecutionRecord
from topics.triggers import TaskContext, Trigger

text = st.text(max_size=30)
maybe = st.none() | text
args_repr = st.sampled_from(["(1, 'a')", "()", "('x...',)", "(b'1',)", "not python", None])


@st.composite
def cases(draw: st.DrawFn) -> tuple[Published, Trigger, int, bool, BreakerState]:
    worker_trigger = draw(st.booleans())
    action: dict[str, object]
    if worker_trigger or draw(st.booleans()):
        action = {
            "type": "slack",
            "webhook_url": "https://hooks.slack.com/services/T0/B0/x",
            "message": "{{ task_name }} failed",
        }
    else:
        action = {
            "type": "retry",
            "delay_seconds": draw(st.integers(0, 60)),
            "max_attempts": draw(st.integers(1, 3)),
            "exponential_backoff": draw(st.booleans()),
        }
    doc = {
        "name": draw(st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")),
        "trigger": {"event": "worker.offline" if worker_trigger else "task.failed"},
        "action": action,
        "circuit_breaker": {
            "max_executions": draw(st.integers(1, 3)),
            "time_window_hours": draw(st.integers(1, 2)),
            "scope": draw(st.sampled_from(["workflow", "cluster"])),
        },
    }
    published = Published.of(parse_workflow(doc, source="test"), version=draw(st.integers(1, 9)))
    at = draw(st.floats(1.6e9, 1.9e9))
    task = None
    if not worker_trigger:
        task = TaskContext(
            id=draw(text),
            root_id=draw(text),
            parent_id=draw(maybe),
            name=draw(maybe),
            queue=draw(maybe),
            worker=draw(maybe),
            args=draw(args_repr),
            kwargs=draw(st.sampled_from(["{}", "{'k': 1}", None])),
            exception=draw(maybe),
            exception_type=draw(maybe),
            error_message=draw(maybe),
            failure_count=draw(st.integers(0, 5)),
        )
    trigger = Trigger(
        trigger_id=draw(text),
        event="worker.offline" if worker_trigger else "task.failed",
        at=at,
        cluster=draw(st.text(min_size=1, max_size=10)),
        task=task,
        worker=draw(maybe) if worker_trigger else None,
        reason=draw(text),
    )
    breaker = BreakerState(ran_at=(at - 1.0,) * draw(st.integers(0, 4)))
    return published, trigger, draw(st.integers(0, 4)), draw(st.booleans()), breaker


@settings(max_examples=300, deadline=None)
@given(cases())
def test_built_record_serializes_as_the_validated_model(
    case: tuple[Published, Trigger, int, bool, BreakerState],
) -> None:
    published, trigger, retries_made, dry_run, breaker = case
    conditions = [ConditionResult(name="task_name_pattern", value="*", matched=True)]
    record = decide(
        published, trigger, conditions, breaker=breaker, retries_made=retries_made, dry_run=dry_run
    ).record
    fast = record.to_json()
    validated = ExecutionRecord.model_validate(record.model_dump(by_alias=True))
    assert fast == validated.to_json()
    assert ExecutionRecord.model_validate_json(fast) == validated
    assert record == validated


@settings(max_examples=300)
@given(st.lists(st.text() | st.integers(), max_size=4))
def test_derived_ids_are_uuid5(parts: list[object]) -> None:
    name = "\x1f".join(str(p) for p in parts)
    assert derive_id(*parts) == str(uuid.uuid5(_NAMESPACE, name))
