"""Tokens and roles from settings: parsing refuses bad entries by name, lookup needs the token."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from flowguard.api.auth import Role, TokenAuth, parse_tokens
from flowguard.errors import AuthError, ConfigError

VIEWER = "v" * 20
EDITOR = "e" * 20


def test_text_form_with_names_and_roles() -> None:
    principals = parse_tokens(SecretStr(f"ann:viewer:{VIEWER}, bob:editor:{EDITOR}"))
    assert {p.name: p.role for p in principals.values()} == {"ann": Role.viewer, "bob": Role.editor}


def test_token_role_form_gets_a_name_that_does_not_reveal_the_token() -> None:
    (principal,) = parse_tokens(SecretStr(f"{EDITOR}:editor")).values()
    assert principal.role is Role.editor
    assert principal.name.startswith("editor-")
    assert EDITOR[:8] not in principal.name


def test_json_form() -> None:
    text = f'[{{"name": "ci", "role": "admin", "token": "{EDITOR}"}}]'
    (principal,) = parse_tokens(SecretStr(text)).values()
    assert (principal.name, principal.role) == ("ci", Role.admin)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"ann:root:{VIEWER}", "entry 1: unknown role 'root'"),
        ("ann:viewer:short", "entry 1: token:"),
        (f"a:b:c:{VIEWER}", "entry 1: expected 'name:role:token'"),
        ("[1", "not valid JSON"),
        (f"ann:viewer:{VIEWER},ann:editor:{EDITOR}", "two tokens share a name"),
    ],
)
def test_bad_entries_are_named_and_never_echo_a_token(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tokens(SecretStr(text))
    assert expected in str(caught.value)
    assert VIEWER not in str(caught.value)
    assert EDITOR not in str(caught.value)


def test_authenticate() -> None:
    auth = TokenAuth(parse_tokens(SecretStr(f"ann:viewer:{VIEWER}")))
    assert auth.authenticate(f"Bearer {VIEWER}").name == "ann"
    for header in (None, "", VIEWER, f"Bearer {EDITOR}", f"Basic {VIEWER}"):
        with pytest.raises(AuthError) as caught:
            auth.authenticate(header)
        assert caught.value.status == 401


def test_roles_are_ordered() -> None:
    assert Role.viewer < Role.editor < Role.admin
