"""flowguard/celery_wire/events.py: raw Celery dicts to models, or a clear reason."""

from __future__ import annotations

import pytest

from flowguard.celery_wire.events import parse_line, translate
from flowguard.errors import EventInvalid
from tests import celery_events as ev
from topics.events import TaskFailed, TaskSent, WorkerHeartbeat

T0 = 1_760_000_000.0


def test_task_sent_keeps_celerys_fields_and_drops_the_rest() -> None:
    event = translate(ev.sent("t1", T0, "app.x", args="(1,)", queue="email"), "prod")
    assert isinstance(event, TaskSent)
    assert (event.cluster, event.task_id, event.name, event.args, event.queue, event.root_id) == (
        "prod",
        "t1",
        "app.x",
        "(1,)",
        "email",
        "t1",
    )


def test_failed_and_heartbeat() -> None:
    failed = translate(ev.failed("t1", T0), "c")
    assert isinstance(failed, TaskFailed)
    assert failed.exception == "ConnectionError('refused')"
    assert failed.name is None, "task-failed does not carry the name; nothing is guessed"
    beat = translate(ev.heartbeat(T0), "c")
    assert isinstance(beat, WorkerHeartbeat)
    assert beat.freq == 2.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([1, 2], "an event must be a JSON object, got list"),
        ({"timestamp": T0}, "missing 'type'"),
        ({"type": "task-failed", "timestamp": T0}, "task-failed without 'uuid'"),
        (
            {"type": "task-failed", "uuid": "t", "timestamp": "yesterday"},
            "timestamp: Input should be a valid number",
        ),
        (
            {"type": "task-failed", "uuid": "t", "timestamp": float("inf")},
            "timestamp: Input should be a finite number",
        ),
        ({"type": "worker-heartbeat", "timestamp": T0}, "hostname"),
    ],
)
def test_invalid_events_say_why(raw: object, reason: str) -> None:
    with pytest.raises(EventInvalid) as info:
        translate(raw, "c")
    assert reason in info.value.reason


def test_custom_event_types_are_ignored_not_refused() -> None:
    assert translate({"type": "task-progress", "uuid": "t", "timestamp": T0}, "c") is None


def test_non_string_args_are_kept_as_their_repr() -> None:
    event = translate({**ev.sent("t1", T0, "app.x"), "args": [1, "a"]}, "c")
    assert event is not None
    assert getattr(event, "args", None) == "[1, 'a']"


def test_normalized_events_are_read_back() -> None:
    event = translate(ev.failed("t1", T0), "prod")
    assert event is not None
    assert parse_line(event.model_dump(mode="json"), "ignored") == event
    with pytest.raises(EventInvalid, match="task_id"):
        parse_line({"kind": "task.failed", "cluster": "c", "timestamp": T0}, "c")
