"""What each action sends, built without a network: payloads, headers, sample marks."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from flowguard.actions import pagerduty, slack, webhook
from flowguard.actions.outbound import Context, excerpt, scrub
from flowguard.actions.registry import PREPARERS, preparer
from flowguard.actions.settings import ActionSettings
from flowguard.errors import ActionFailed
from tests.unit.actions.notices import ROUTING_KEY, notice

NOW = 1_800_000_000.0


def _ctx(sample: bool = False, **env: str) -> Context:
    return Context(ActionSettings(), sample=sample, now=NOW, environ=env)


def _body(doc: dict[str, Any], sample: bool = False, **env: str) -> dict[str, Any]:
    sent = notice(doc)
    out = preparer(sent.action.type)(sent, _ctx(sample, **env))
    return dict(orjson.loads(out.body))


def test_every_notify_action_type_has_a_runner() -> None:
    assert set(PREPARERS) == {"slack", "webhook", "pagerduty"}
    with pytest.raises(ActionFailed, match="no runner for action type 'retry'"):
        preparer("retry")


def test_slack_sample_is_marked_as_a_test() -> None:
    body = _body({"type": "slack", "webhook_url": "https://hooks.slack.com/x/y"}, sample=True)
    assert body["text"].startswith("[flowguard test] This is a sample notification")
    assert "blocks" not in body


def test_slack_cuts_long_text() -> None:
    sent = notice({"type": "slack", "webhook_url": "https://h.example/x", "blocks": True})
    sent = type(sent)(sent.action_id, sent.action, "x" * 50_000, sent.dedup_key, sent.record)
    body = orjson.loads(slack.prepare(sent, _ctx()).body)
    assert len(body["text"]) == 40_000
    assert len(body["blocks"][0]["text"]["text"]) == 3000


def test_webhook_payload_and_headers() -> None:
    sent = notice(
        {
            "type": "webhook",
            "url": "${FLOWGUARD_SECRET_HOOK}",
            "headers": {"X-Team": "payments"},
            "secret": "${FLOWGUARD_SECRET_SIGNING}",
            "timeout_seconds": 2.5,
            "retries": 1,
        }
    )
    out = webhook.prepare(
        sent, _ctx(FLOWGUARD_SECRET_HOOK="https://h.example/in", FLOWGUARD_SECRET_SIGNING="s" * 20)
    )
    assert str(out.url) == "https://h.example/in"
    assert out.headers["X-Team"] == "payments"
    assert out.headers["Idempotency-Key"] == sent.action_id
    assert (out.timeout_seconds, out.retries) == (2.5, 1)
    assert "s" * 20 in out.secrets
    assert out.sign is not None
    signed = out.sign(out.body, 1_800_000_123)
    expected = hmac.new(b"s" * 20, b"1800000123." + out.body, hashlib.sha256).hexdigest()
    assert signed == {"Flowguard-Timestamp": "1800000123", "Flowguard-Signature": f"v1={expected}"}
    body = orjson.loads(out.body)
    assert body["sent_at"] == "2027-01-15T08:00:00.000000Z"
    assert body["execution"]["workflow"]["id"] == "payments-alert"


def test_a_missing_environment_variable_fails_naming_the_field() -> None:
    sent = notice(
        {
            "type": "webhook",
            "url": "https://h.example/x",
            "headers": {"A": "${FLOWGUARD_SECRET_NOPE}"},
        }
    )
    with pytest.raises(
        ActionFailed, match=r"^headers.A: environment variable FLOWGUARD_SECRET_NOPE is not set"
    ):
        webhook.prepare(sent, _ctx())


def test_a_sample_never_retries() -> None:
    for doc in (
        {"type": "webhook", "url": "https://h.example/x", "retries": 5},
        {"type": "slack", "webhook_url": "https://h.example/x"},
        {"type": "pagerduty", "routing_key": ROUTING_KEY},
    ):
        sent = notice(doc)
        assert preparer(sent.action.type)(sent, _ctx(sample=True)).retries == 0


def test_pagerduty_event() -> None:
    body = _body({"type": "pagerduty", "routing_key": ROUTING_KEY, "severity": "warning"})
    assert body["dedup_key"] == "payments-alert/eu/task-1"
    payload = body["payload"]
    assert payload["severity"] == "warning"
    assert payload["component"] == "payments.process_card"
    assert payload["class"] == "ConnectionError"
    assert payload["custom_details"]["task"]["root_id"] == "task-1"
    sample = _body({"type": "pagerduty", "routing_key": ROUTING_KEY}, sample=True)
    assert sample["payload"]["severity"] == "info"
    assert sample["dedup_key"] == "payments-alert/eu/task-1/sample"
    assert sample["payload"]["summary"].startswith("[flowguard test]")


def test_long_dedup_keys_are_hashed_stably() -> None:
    key = "w/" + "x" * 400
    assert pagerduty.dedup_key(key) == pagerduty.dedup_key(key)
    assert len(pagerduty.dedup_key(key)) <= 255
    assert pagerduty.dedup_key("short") == "short"


def test_excerpts_are_short_single_line_and_scrubbed() -> None:
    body = b"error:\n\n  token=abcdef0123456789SECRET \xff\xfe" + b"y" * 1000
    text = excerpt(body, 60, ("abcdef0123456789SECRET",))
    assert "SECRET" not in text
    assert "\n" not in text
    assert len(text) == 60
    assert text.startswith("error: token=***CRET")
    assert scrub("a-short b", ("short",)) == "a-*** b"
