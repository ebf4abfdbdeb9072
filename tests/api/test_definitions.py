"""Secrets in an author's definition: masked on the way out, kept when sent back unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from flowguard.api.definitions import from_yaml, restore_secrets
from flowguard.engine.workflow import SlackAction
from flowguard.errors import WorkflowInvalid
from flowguard.store import mask_definition

URL = "https://hooks.example.com/services/T000/B000/XXXXXXXXXXXXXXXX"
HEADER = "Bearer 0123456789abcdef0123"


def definition(url: str = URL, header: str = HEADER) -> dict[str, Any]:
    return {
        "name": "wf",
        "trigger": {"event": "task.failed"},
        "actions": [
            {"type": "slack", "webhook_url": url},
            {"type": "webhook", "url": url, "headers": {"Authorization": header}, "secret": "s"},
        ],
        "circuit_breaker": {"notify": {"type": "pagerduty", "routing_key": "R" * 32}},
    }


def test_mask_hides_every_secret() -> None:
    text = str(mask_definition(definition()))
    for secret in (URL, HEADER, "R" * 32):
        assert secret not in text
    assert "'secret': '***'" in text


def test_env_references_stay() -> None:
    masked = mask_definition(definition(url="${SLACK_URL}"))
    assert masked["actions"][0]["webhook_url"] == "${SLACK_URL}"


def test_unchanged_masked_values_get_the_stored_secret_back() -> None:
    stored = definition()
    edited = mask_definition(stored)
    edited["name"] = "renamed"
    restored = restore_secrets(edited, stored)
    assert restored == {**stored, "name": "renamed"}


def test_a_typed_value_is_kept() -> None:
    stored = definition()
    edited = mask_definition(stored)
    edited["actions"][0]["webhook_url"] = "https://other.example.com/x"
    assert restore_secrets(edited, stored)["actions"][0]["webhook_url"] == (
        "https://other.example.com/x"
    )


def test_a_mask_moved_to_another_field_is_not_a_secret_source() -> None:
    stored = definition()
    edited = mask_definition(stored)
    edited["actions"].reverse()  # the slack mask now sits where nothing masked that value
    restored = restore_secrets(edited, stored)
    assert URL not in str(restored["actions"][1])


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_round_trip_any_secret(url_tail: str, header: str) -> None:
    stored = definition(url=f"https://h/{url_tail}", header=header)
    assert restore_secrets(mask_definition(stored), stored) == stored


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        from_yaml("name: [unclosed\n")
    assert caught.value.problems[0][0].startswith("line ")


def test_secret_str_fields_are_secretstr() -> None:
    assert SlackAction(webhook_url=SecretStr(URL)).webhook_url.get_secret_value() == URL
