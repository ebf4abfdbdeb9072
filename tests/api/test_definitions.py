"""Secrets in an author's definition: masked on the way out, kept when sent back unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from flowguard.api.definitions import from_yaml, restore_secrets
from flowguard.control.masking import mask_definition
from flowguard.engine.workflow import SlackAction
from flowguard.errors import WorkflowInvalid

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


def test_moved_actions_keep_their_own_secrets() -> None:
    stored = definition()
    edited = mask_definition(stored)
    edited["actions"].reverse()
    assert restore_secrets(edited, stored)["actions"] == list(reversed(stored["actions"]))


def test_a_mask_moved_to_another_field_is_not_a_secret_source() -> None:
    stored = definition()
    stored["actions"][0]["webhook_url"] = "https://hooks.example.com/services/T000/B000/OTHERURL"
    edited = mask_definition(stored)
    # The slack URL's mask, now as the webhook's URL: no stored webhook had that URL.
    edited["actions"][1]["url"] = edited["actions"][0]["webhook_url"]
    edited["actions"][1]["headers"] = {"Authorization": "typed"}
    edited["actions"][1]["secret"] = "t" * 16
    with pytest.raises(WorkflowInvalid) as caught:
        restore_secrets(edited, stored)
    assert [field for field, _ in caught.value.problems] == ["actions.1.url"]


@given(
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=40).filter(lambda h: not h.startswith("***")),
)
def test_round_trip_any_secret(url_tail: str, header: str) -> None:
    stored = definition(url=f"https://h/{url_tail}", header=header)
    assert restore_secrets(mask_definition(stored), stored) == stored


def editor_normalized(definition: dict[str, Any]) -> dict[str, Any]:
    """What editor.js normalize() sends back: ``action`` spelled as ``actions``."""
    copy = mask_definition(definition)
    if "action" in copy:
        copy["actions"] = [copy.pop("action")]
    return copy


def single(**action: Any) -> dict[str, Any]:
    return {"name": "wf", "trigger": {"event": "task.failed"}, "action": action}


WEBHOOK = {"type": "webhook", "url": URL, "headers": {"X-Token": HEADER}, "secret": "s" * 20}


def test_action_edited_back_as_actions_keeps_every_secret() -> None:
    stored = single(**WEBHOOK)
    edited = editor_normalized(stored)
    assert restore_secrets(edited, stored) == {**edited, "actions": [WEBHOOK]}


def test_actions_edited_back_as_action_keeps_every_secret() -> None:
    stored = {**single(), "actions": [WEBHOOK]}
    del stored["action"]
    edited = mask_definition(stored)
    edited["action"] = edited.pop("actions")[0]
    assert restore_secrets(edited, stored)["action"] == WEBHOOK


def test_a_masked_value_nothing_can_restore_is_refused_by_name() -> None:
    draft = single(type="webhook", url=URL, headers={"X-Token": "***6789"})
    with pytest.raises(WorkflowInvalid) as caught:
        restore_secrets(draft, None)
    [(field, reason)] = caught.value.problems
    assert field == "action.headers.X-Token"
    assert "masked" in reason
    assert "6789" not in reason


def test_a_changed_url_gets_no_stored_secret() -> None:
    """Restoring a header onto a URL its author never chose would send the secret there."""
    stored = definition()
    edited = mask_definition(stored)
    edited["actions"][1]["url"] = "https://attacker.example/collect"
    with pytest.raises(WorkflowInvalid) as caught:
        restore_secrets(edited, stored)
    problems = dict(caught.value.problems)
    assert set(problems) == {"actions.1.headers.Authorization", "actions.1.secret"}
    assert "re-enter the secret when you change the URL" in problems["actions.1.secret"]


def test_a_changed_url_with_the_secrets_typed_again_is_kept() -> None:
    stored = definition()
    edited = mask_definition(stored)
    edited["actions"][1].update(
        url="https://other.example/x", headers={"Authorization": "Bearer new"}, secret="n" * 16
    )
    restored = restore_secrets(edited, stored)
    assert restored["actions"][1]["headers"] == {"Authorization": "Bearer new"}
    assert restored["actions"][0]["webhook_url"] == URL  # its own URL did not change


def test_a_changed_action_type_gets_no_stored_secret() -> None:
    stored = single(type="slack", webhook_url=URL)
    edited = mask_definition(stored)
    edited["action"] = {"type": "webhook", "url": edited["action"]["webhook_url"]}
    with pytest.raises(WorkflowInvalid, match=r"action\.url"):
        restore_secrets(edited, stored)


def test_a_stored_value_that_looks_masked_is_not_kept() -> None:
    """A mask saved literally by an older version is refused, not sent as a header."""
    stored = single(type="webhook", url=URL, headers={"X-Token": "***6789"})
    with pytest.raises(WorkflowInvalid, match=r"action\.headers\.X-Token"):
        restore_secrets(mask_definition(stored), stored)


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        from_yaml("name: [unclosed\n")
    assert caught.value.problems[0][0].startswith("line ")


def test_secret_str_fields_are_secretstr() -> None:
    assert SlackAction(webhook_url=SecretStr(URL)).webhook_url.get_secret_value() == URL
