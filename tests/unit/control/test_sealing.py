"""Sealing literal secrets (issue 16, item 1): the keyring, the sealed form, and what the rest
of the code does with a sealed value (carries it, masks it, never checks it as a URL)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError

from flowguard.control.masking import mask_definition, open_definition, seal_definition
from flowguard.control.secrets import Keyring, is_sealed, mask, reveal, sealed_key_id
from flowguard.engine.documents import parse_workflow
from flowguard.engine.lint import literal_secret_warnings
from flowguard.errors import ConfigError
from flowguard.settings import Settings
from flowguard.settings_base import setting_problem

URL = "https://hooks.slack.com/services/T0/B0/SEALEDUNITSECRET0123"


def key(key_id: str) -> str:
    return f"{key_id}:{Fernet.generate_key().decode()}"


def test_seal_and_open_by_key_id() -> None:
    old, new = key("a"), key("b")
    sealed = Keyring.of(old).seal(URL)
    assert is_sealed(sealed)
    assert sealed_key_id(sealed) == "a"
    assert URL not in sealed
    assert sealed != Keyring.of(old).seal(URL), "a fresh data key and IV each time"
    assert Keyring.of(new, [old]).open(sealed) == URL
    assert reveal(SecretStr(sealed), keyring=Keyring.of(new, [old])) == URL


def test_an_unknown_key_id_is_named_and_nothing_leaks() -> None:
    sealed = Keyring.of(key("gone")).seal(URL)
    with pytest.raises(ConfigError, match="sealed with key 'gone'") as caught:
        reveal(SecretStr(sealed), keyring=Keyring.of(key("b")))
    assert URL not in str(caught.value)
    with pytest.raises(ConfigError, match="does not open with key 'gone'"):
        Keyring.of(key("gone")).open(sealed)  # another key under the same id


def test_a_sealed_value_is_masked_and_accepted_by_the_engine_unchecked() -> None:
    sealed = Keyring.of(key("k")).seal(URL)
    assert mask(sealed) == "***"
    doc = {
        "name": "w",
        "trigger": {"event": "task.failed"},
        "action": {"type": "slack", "webhook_url": sealed},
    }
    workflow = parse_workflow(doc, source="t")  # what the worker's feed does with the record
    assert literal_secret_warnings(workflow) == []
    assert mask_definition(doc)["action"]["webhook_url"] == "***"


def test_seal_definition_keeps_references_and_unchanged_secrets() -> None:
    ring = Keyring.of(key("k"))
    doc = {
        "name": "w",
        "trigger": {"event": "task.failed"},
        "action": {"type": "webhook", "url": URL, "headers": {"X-A": "${FLOWGUARD_SECRET_A}"}},
    }
    sealed = seal_definition(doc, ring)
    assert sealed["action"]["headers"] == {"X-A": "${FLOWGUARD_SECRET_A}"}
    assert is_sealed(sealed["action"]["url"])
    assert seal_definition(doc, ring, sealed) == sealed
    assert open_definition(sealed, ring) == doc
    assert seal_definition(doc, Keyring()) == doc  # no key: as today


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("no-colon", "must be '<key id>:<Fernet key>'"),
        ("bad id!:x", "must be '<key id>:<Fernet key>'"),
        ("k1:not-a-fernet-key-value", "key 'k1' is not a Fernet key"),
    ],
)
def test_a_bad_key_setting_names_the_variable_not_the_key(value: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(secrets_key=value)
    problem = setting_problem(caught.value)
    assert problem.startswith("FLOWGUARD_SECRETS_KEY: ")
    assert reason in problem
    assert "not-a-fernet-key-value" not in problem


def test_old_keys_are_comma_separated() -> None:
    a, b, c = key("a"), key("b"), key("c")
    ring = Settings(secrets_key=a, secrets_old_keys=f"{b},{c}").keyring()  # type: ignore[arg-type]
    assert ring.current_id == "a"
    assert sorted(ring.keys) == ["a", "b", "c"]
