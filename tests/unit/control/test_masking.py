"""Secrets in stored definitions: masked wherever the author may have put one."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowguard.control.masking import mark_changed, mask_definition, still_masked
from flowguard.control.store import to_yaml

# A marker no key or value of the document holds, so a secret is never a piece of them (one
# drawn as "Authoriz" was found "in" the masked output's own header name).
SECRET = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N")), min_size=8, max_size=60
).map(lambda text: f"qz7{text}")


def workflow(slack: str, url: str, header: str, key: str, signing: str) -> dict[str, Any]:
    return {
        "name": "All the secrets",
        "trigger": {"event": "task.failed"},
        "actions": [
            {"type": "slack", "webhook_url": f"https://hooks.example/{slack}"},
            {
                "type": "webhook",
                "url": f"https://ops.example/{url}",
                "headers": {"Authorization": header, "X-Env": "${TOKEN}"},
                "secret": signing,
            },
            {"type": "pagerduty", "routing_key": key},
        ],
        "circuit_breaker": {
            "max_executions": 5,
            "notify": {"type": "slack", "webhook_url": f"https://hooks.example/b/{slack}"},
        },
    }


@given(SECRET, SECRET, SECRET, SECRET, SECRET)
def test_no_secret_survives_masking(slack: str, url: str, header: str, key: str, sig: str) -> None:
    definition = workflow(slack, url, header, key, sig)
    text = to_yaml(mask_definition(definition))
    for secret in (f"hooks.example/{slack}", f"ops.example/{url}", header, key, sig):
        assert secret not in text
    assert "${TOKEN}" in text  # a reference names a variable; it is not itself secret
    assert definition == workflow(slack, url, header, key, sig)  # the input is untouched


def test_reveal_keeps_everything() -> None:
    definition = workflow("a" * 20, "b" * 20, "c" * 20, "d" * 20, "e" * 20)
    assert mask_definition(definition, reveal=True) == definition


def test_single_action_form_and_non_string_values() -> None:
    masked = mask_definition(
        {"name": "x", "action": {"type": "webhook", "url": "https://h.example/abcdefghijklmnop",
                                 "secret": 12345678}}
    )  # fmt: skip
    assert masked["action"] == {"type": "webhook", "url": "***mnop", "secret": "***"}


def test_a_changed_secret_that_masks_the_same_is_marked() -> None:
    old = workflow("x" * 20 + "tail", "u" * 20, "h" * 20, "k" * 20, "s" * 20)
    new = workflow("y" * 20 + "tail", "u" * 20, "h" * 20, "k" * 20, "s" * 20)
    marked = mark_changed(old, new)
    assert marked["actions"][0]["webhook_url"] == "***tail (changed)"
    assert marked["circuit_breaker"]["notify"]["webhook_url"] == "***tail (changed)"
    assert marked["actions"][1]["url"] == "***uuuu"  # unchanged: no mark


def test_still_masked_names_every_mask_and_nothing_else() -> None:
    definition = workflow("a" * 20, "b" * 20, "c" * 20, "d" * 20, "e" * 20)
    assert still_masked(definition) == []
    masked = mask_definition(definition)
    assert still_masked(masked) == [
        "actions.0.webhook_url",
        "actions.1.url",
        "actions.1.secret",
        "actions.1.headers.Authorization",
        "actions.2.routing_key",
        "circuit_breaker.notify.webhook_url",
    ]  # the ${TOKEN} reference is not a mask
