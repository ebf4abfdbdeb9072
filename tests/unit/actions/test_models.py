"""Action definitions are refused at load time, naming the field and the reason."""

from __future__ import annotations

from typing import Any

import pytest

from flowguard.engine.documents import parse_workflow
from flowguard.errors import WorkflowInvalid
from tests.unit.actions.notices import ROUTING_KEY

SLACK = "https://hooks.slack.com/services/T000/B000/XXXX"
HOOK = "https://hooks.example.com/flowguard"


def _problems(action: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(
            {"name": "w", "trigger": {"event": "task.failed"}, "action": action}, source="f.yaml"
        )
    return info.value.problems


@pytest.mark.parametrize(
    ("action", "field", "reason"),
    [
        ({"type": "email", "to": "x"}, "action", "unknown type 'email'"),
        ({"webhook_url": SLACK}, "action", "missing type"),
        ({"type": "slack", "webhook_url": "hooks.slack.com/x"}, "action.webhook_url", "http://"),
        ({"type": "slack", "webhook_url": "ftp://h/x"}, "action.webhook_url", "http://"),
        ({"type": "slack", "webhook_url": "https://h x/y"}, "action.webhook_url", "spaces"),
        ({"type": "webhook", "url": "https://h:99999/x"}, "action.url", "port (1-65535)"),
        ({"type": "webhook", "url": "https://-bad-.example/x"}, "action.url", "valid host name"),
        ({"type": "webhook", "url": "https://u:p@h.example/x"}, "action.url", "credentials"),
        ({"type": "webhook", "url": "${HOOK"}, "action.url", "environment reference"),
        (
            {"type": "slack", "webhook_url": SLACK, "message": "{task}"},
            "action.message",
            "unknown variable {task}",
        ),
        (
            {"type": "pagerduty", "routing_key": ROUTING_KEY, "summary": "{ task_name }"},
            "action.summary",
            "no spaces inside the braces",
        ),
        ({"type": "slack", "webhook_url": SLACK, "message": ""}, "action.message", "at least 1"),
        (
            {"type": "webhook", "url": HOOK, "retries": -1},
            "action.retries",
            "greater than or equal to 0",
        ),
        (
            {"type": "webhook", "url": HOOK, "timeout_seconds": 0},
            "action.timeout_seconds",
            "greater than 0",
        ),
        ({"type": "webhook", "url": HOOK, "method": "GET"}, "action.method", "'POST'"),
        (
            {"type": "webhook", "url": HOOK, "headers": {"Bad Header": "v"}},
            "action.headers",
            "'Bad Header' is not a valid HTTP header name",
        ),
        (
            {"type": "webhook", "url": HOOK, "headers": {"Idempotency-Key": "x"}},
            "action.headers",
            "header Idempotency-Key is set by flowguard",
        ),
        (
            {"type": "webhook", "url": HOOK, "headers": {"X-Token": "a\r\nHost: evil"}},
            "action.headers",
            "must be one line",
        ),
        (
            {"type": "webhook", "url": HOOK, "headers": {"X-Token": "abc\x01def"}},
            "action.headers",
            "header X-Token: the value must be one line without control characters",
        ),
        (
            {"type": "webhook", "url": HOOK, "headers": {"X-Token": "abc\x7f"}},
            "action.headers",
            "without control characters",
        ),
        (
            {"type": "webhook", "url": HOOK, "headers": {"Authorization": "Bearer SECRET-tök-123"}},
            "action.headers",
            "header Authorization: the value has non-ASCII characters",
        ),
        (
            {"type": "webhook", "url": HOOK, "headers": {"X-Token": "token "}},
            "action.headers",
            "must not start or end with whitespace",
        ),
        ({"type": "webhook", "url": HOOK, "secret": "short"}, "action.secret", "at least 16"),
        ({"type": "pagerduty", "routing_key": "abc"}, "action.routing_key", "32-character"),
        (
            {"type": "pagerduty", "routing_key": ROUTING_KEY, "severity": "fatal"},
            "action.severity",
            "'critical'",
        ),
        ({"type": "slack", "webhook_url": SLACK, "icon_emoji": "fire"}, "action.icon_emoji", ":"),
        ({"type": "slack", "webhook_url": SLACK, "channel": "#a b"}, "action.channel", "pattern"),
    ],
)
def test_bad_actions_are_refused_with_field_and_reason(
    action: dict[str, Any], field: str, reason: str
) -> None:
    problems = _problems(action)
    assert any(f == field and reason in r for f, r in problems), problems


@pytest.mark.parametrize(
    "value",
    [
        "https://user:hunter2-SECRET@h.example/x",
        "https://h.example:99999/SECRET",
        "hooks.example/SECRET-token",
        "https://h x/SECRET",
    ],
)
def test_a_refused_url_is_never_echoed(value: str) -> None:
    problems = _problems({"type": "webhook", "url": value})
    assert "SECRET" not in str(problems)


@pytest.mark.parametrize("value", ["Bearer SECRET-tök", "SECRET\r\nX: 1", " SECRET"])
def test_a_refused_header_value_is_never_echoed(value: str) -> None:
    problems = _problems({"type": "webhook", "url": HOOK, "headers": {"Authorization": value}})
    assert "SECRET" not in str(problems)
    assert any(f == "action.headers" for f, _ in problems), problems


@pytest.mark.parametrize(
    "action",
    [
        {"type": "slack", "webhook_url": "${SLACK_URL}"},
        {"type": "slack", "webhook_url": SLACK, "channel": "#ops", "icon_emoji": ":fire:"},
        {"type": "webhook", "url": "https://[2001:db8::1]:8443/x"},
        {"type": "webhook", "url": "http://127.0.0.1:8080/x"},
        {"type": "webhook", "url": "https://bücher.example/x"},
        {"type": "webhook", "url": HOOK, "headers": {"Authorization": "${TOKEN}"}},
        {"type": "webhook", "url": HOOK, "headers": {"X-Empty": "", "X-Tabbed": "a\tb  c"}},
        {"type": "webhook", "url": HOOK, "secret": "${SIGNING_SECRET}", "retries": 0},
        {"type": "pagerduty", "routing_key": ROUTING_KEY},
        {"type": "pagerduty", "routing_key": "${PD_KEY}", "severity": "critical"},
    ],
)
def test_good_actions_load(action: dict[str, Any]) -> None:
    parse_workflow(
        {"name": "w", "trigger": {"event": "task.failed"}, "action": action}, source="f.yaml"
    )


@pytest.mark.parametrize("key", ["action", "actions"])
def test_a_bad_only_action_is_the_only_problem_reported(key: str) -> None:
    action = {"type": "webhook", "url": "nope", "retries": -1}
    doc = {"name": "w", "trigger": {"event": "task.failed"}, key: action}
    if key == "actions":
        doc[key] = [action]
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(doc, source="f.yaml")
    where = "action" if key == "action" else "actions.0"
    assert sorted(f for f, _ in info.value.problems) == [f"{where}.retries", f"{where}.url"]


def test_an_empty_actions_list_is_still_refused() -> None:
    doc = {"name": "w", "trigger": {"event": "task.failed"}, "actions": []}
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(doc, source="f.yaml")
    assert [f for f, _ in info.value.problems] == ["actions"]
    assert "at least 1 item" in info.value.problems[0][1]
