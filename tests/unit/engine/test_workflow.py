"""Workflow definitions: secrets masked wherever a workflow leaves the process."""

from __future__ import annotations

import pytest

from flowguard.engine.documents import parse_workflow
from flowguard.errors import WorkflowInvalid

SECRET_URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXXabcd"


def test_export_masks_secrets_unless_asked() -> None:
    wf = parse_workflow(
        {
            "name": "n",
            "trigger": {"event": "task.failed"},
            "actions": [
                {"type": "slack", "webhook_url": SECRET_URL},
                {
                    "type": "webhook",
                    "url": "${HOOK_URL}",
                    "headers": {"Authorization": "Bearer sk-live-123456789012"},
                    "secret": "s3cr3t-signing-key!",
                },
            ],
        },
        source="t",
    )
    exported = str(wf.to_document())
    assert "SECRET" not in exported
    assert "sk-live" not in exported
    assert "s3cr3t" not in exported
    assert "***abcd" in exported
    assert "${HOOK_URL}" in exported, "a reference is not itself a secret"
    assert SECRET_URL in str(wf.to_document(reveal_secrets=True))
    assert "SECRET" not in repr(wf)


def test_single_action_round_trips_as_action() -> None:
    doc = {
        "name": "n",
        "trigger": {"event": "task.failed"},
        "action": {"type": "retry", "delay_seconds": 5},
    }
    wf = parse_workflow(doc, source="t")
    assert wf.to_document()["action"]["delay_seconds"] == 5
    assert parse_workflow(wf.to_document(), source="t") == wf


@pytest.mark.parametrize(
    ("doc", "field", "reason"),
    [
        (
            {"trigger": {"event": "worker.offline"}, "action": {"type": "retry"}},
            "(document)",
            "a retry action needs a task trigger",
        ),
        (
            {
                "trigger": {"event": "worker.offline", "conditions": {"queue": "q"}},
                "action": {"type": "slack", "webhook_url": SECRET_URL},
            },
            "trigger",
            "condition queue does not apply to worker.offline",
        ),
        (
            {"trigger": {"event": "task.execution_time_exceeded"}, "action": {"type": "retry"}},
            "trigger",
            "threshold_seconds is required",
        ),
        (
            {
                "trigger": {"event": "task.failed", "conditions": {"error_pattern": "("}},
                "action": {"type": "retry"},
            },
            "trigger.conditions.error_pattern",
            "not a valid regular expression",
        ),
        (
            {"trigger": {"event": "task.failed"}, "action": {"type": "retry"}, "actions": []},
            "(document)",
            "give action or actions, not both",
        ),
        (
            {
                "trigger": {"event": "task.failed"},
                "action": {"type": "retry"},
                "circuit_breaker": {"time_window_hours": 1, "time_window_seconds": 60},
            },
            "circuit_breaker",
            "not both",
        ),
        (
            {"trigger": {"event": "task.boom"}, "action": {"type": "retry"}},
            "trigger.event",
            "Input should be",
        ),
    ],
)
def test_refusals_name_the_field(doc: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow({"name": "w", **doc}, source="f.yaml")
    assert any(p == field and reason in r for p, r in info.value.problems), info.value.problems
