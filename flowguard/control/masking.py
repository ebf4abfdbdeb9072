"""Secrets in an author's workflow definition: where they are, masked, and what a mask is.

A definition is stored as its author wrote it, literal secrets included: the only place
they live. Everything shown to a person or sent over the API goes through
:func:`mask_definition` (``***`` plus at most four characters,
:func:`flowguard.control.secrets.mask`); a value that is still a mask is never a secret
(:func:`still_masked`).

With an operator key, the store publishes the definition with each literal sealed
(:func:`seal_definition`); a sealed value is carried as is everywhere, masked like a literal,
and opened only where an action sends it (:func:`flowguard.control.secrets.reveal`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from flowguard.control.secrets import (
    Keyring,
    SecretPolicy,
    env_ref_name,
    is_sealed,
    mask,
    sealed_key_id,
)
from flowguard.errors import ConfigError, WorkflowInvalid

# Keys whose values are secrets inside an action mapping (slack, webhook, pagerduty, and a
# circuit breaker's notify); every value under ``headers`` is a secret too.
SECRET_KEYS = frozenset({"webhook_url", "url", "secret", "routing_key"})
# What :func:`flowguard.control.secrets.mask` makes: ``***`` and at most four characters.
_MASKED = re.compile(r"\*\*\*.{0,4}", re.DOTALL)


def _secret_paths(definition: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str]]:
    """(field path, mapping, key) for every secret value in an author's definition, as written."""
    holders: list[tuple[str, Any]] = [("action", definition.get("action"))]
    actions = definition.get("actions")
    if isinstance(actions, list):
        holders.extend((f"actions.{i}", action) for i, action in enumerate(actions))
    breaker = definition.get("circuit_breaker")
    if isinstance(breaker, Mapping):
        holders.append(("circuit_breaker.notify", breaker.get("notify")))
    found: list[tuple[str, Mapping[str, Any], str]] = []
    for path, holder in holders:
        if not isinstance(holder, Mapping):
            continue
        found.extend((f"{path}.{key}", holder, key) for key in holder if key in SECRET_KEYS)
        headers = holder.get("headers")
        if isinstance(headers, Mapping):
            found.extend((f"{path}.headers.{key}", headers, key) for key in headers)
    return found


def mask_definition(definition: Mapping[str, Any], *, reveal: bool = False) -> dict[str, Any]:
    """A deep copy of an author's definition with every secret masked (unless ``reveal``).

    The definition is the only place a literal secret lives; anything shown to a person or
    sent over the API goes through here. ``${ENV}`` references are not secret and stay.
    """
    copied: dict[str, Any] = copy.deepcopy(dict(definition))
    if reveal:
        return copied
    for _, holder, key in _secret_paths(copied):
        if isinstance(holder, dict):
            value = holder[key]
            holder[key] = mask(value) if isinstance(value, str) else "***"
    return copied


def looks_masked(value: str) -> bool:
    """Is ``value`` what masking shows (``***`` and up to four characters), not a secret?"""
    return _MASKED.fullmatch(value) is not None


def still_masked(definition: Mapping[str, Any]) -> list[str]:
    """Field paths of the secrets in ``definition`` that are masks, not secrets."""
    return [
        path
        for path, holder, key in _secret_paths(definition)
        if isinstance(holder[key], str) and looks_masked(holder[key])
    ]


def mark_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` masked, with a secret that changed but masks the same as before marked so."""
    before = {path: holder[key] for path, holder, key in _secret_paths(old)}
    after = {path: holder[key] for path, holder, key in _secret_paths(new)}
    masked = mask_definition(new)
    for path, holder, key in _secret_paths(masked):
        was = before.get(path)
        if was is None or was == after[path] or not isinstance(holder, dict):
            continue
        if isinstance(was, str) and mask(was) == holder[key]:
            holder[key] = f"{holder[key]} (changed)"
    return masked


def reference_problems(
    definition: Mapping[str, Any], policy: SecretPolicy
) -> list[tuple[str, str]]:
    """(field path, reason) for each ``${NAME}`` the policy does not allow.

    Checked on save, apply, lint, Test Workflow and replay, so an editor cannot point a
    header at ``${FLOWGUARD_API_TOKENS}`` and read it at their own URL.
    """
    found = []
    for path, holder, key in _secret_paths(definition):
        value = holder[key]
        name = env_ref_name(value) if isinstance(value, str) else None
        problem = policy.problem(name) if name is not None else None
        if problem is not None:
            found.append((path, problem))
    return found


def literal_secret_paths(definition: Mapping[str, Any]) -> list[str]:
    """Field paths of the secrets written as literals (not ``${NAME}``), as written."""
    return [
        path
        for path, holder, key in _secret_paths(definition)
        if isinstance(holder[key], str)
        and env_ref_name(holder[key]) is None
        and not is_sealed(holder[key])
    ]


def refuse_references(source: str, definition: Mapping[str, Any], policy: SecretPolicy) -> None:
    """Raise :class:`WorkflowInvalid` naming each ``${NAME}`` field the policy refuses."""
    problems = reference_problems(definition, policy)
    if problems:
        raise WorkflowInvalid(source, problems)


def _strings(definition: Mapping[str, Any]) -> dict[str, str]:
    """Field path -> value of every secret written as a string."""
    return {
        path: holder[key]
        for path, holder, key in _secret_paths(definition)
        if isinstance(holder[key], str)
    }


def seal_definition(
    definition: Mapping[str, Any],
    keyring: Keyring,
    previous: Mapping[str, Any] | None = None,
    *,
    reseal: bool = False,
) -> dict[str, Any]:
    """A deep copy of ``definition`` with every literal secret sealed with the current key.

    ``${NAME}`` stays; a sealed value stays (``reseal``: one sealed with an older key is
    sealed again with the current one). A literal equal to what ``previous`` sealed at the
    same path keeps that sealed value, so an unchanged secret is not a change. Without a
    current key, the copy is returned as it is. Raises :class:`ConfigError` (naming the field
    and the key id) when ``reseal`` meets a value no key opens.
    """
    copied: dict[str, Any] = copy.deepcopy(dict(definition))
    if not keyring.sealing:
        return copied
    before = _strings(previous or {})
    for path, holder, key in _secret_paths(copied):
        value = holder[key]
        if not isinstance(value, str) or not isinstance(holder, dict):
            continue
        if is_sealed(value):
            if not reseal or sealed_key_id(value) == keyring.current_id:
                continue
            try:
                value = keyring.open(value)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        elif env_ref_name(value) is not None:
            continue
        holder[key] = _reuse(before.get(path), value, keyring) or keyring.seal(value)
    return copied


def _reuse(sealed: str | None, clear: str, keyring: Keyring) -> str | None:
    """``sealed`` if it is sealed with the current key and opens to ``clear``."""
    if sealed is None or sealed_key_id(sealed) != keyring.current_id:
        return None
    try:
        return sealed if keyring.open(sealed) == clear else None
    except ConfigError:
        return None


def open_definition(definition: Mapping[str, Any], keyring: Keyring) -> dict[str, Any]:
    """A deep copy with each sealed secret the keyring opens in clear (to compare meanings);
    one it cannot open stays sealed. Never shown or sent: the store compares with it."""
    copied: dict[str, Any] = copy.deepcopy(dict(definition))
    for _, holder, key in _secret_paths(copied):
        value = holder[key]
        if isinstance(value, str) and is_sealed(value) and isinstance(holder, dict):
            try:
                holder[key] = keyring.open(value)
            except ConfigError:
                continue
    return copied


def sealed_paths(definition: Mapping[str, Any]) -> dict[str, str]:
    """Field path -> sealed value, for every sealed secret in ``definition``."""
    return {path: value for path, value in _strings(definition).items() if is_sealed(value)}


def refuse_sealed(source: str, draft: Mapping[str, Any]) -> None:
    """Raise :class:`WorkflowInvalid` for each sealed value typed into a draft.

    Nothing shows a sealed value (the API masks it, a revealed export opens it), so one in a
    draft was copied from a Kafka record: run as a Test Workflow sample, it would send that
    workflow's secret wherever the draft says.
    """
    found = sealed_paths(draft)
    if found:
        reason = "is a sealed value, which cannot be typed in: enter the secret, or ${ENV_VAR}"
        raise WorkflowInvalid(source, [(path, reason) for path in found])
