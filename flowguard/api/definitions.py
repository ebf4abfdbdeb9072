"""Workflow definitions as the API shows and takes them: the author's mapping, secrets masked.

The stored definition is exactly what the author wrote, literal secrets included
(it is the only place they live). Everything the API sends goes through
:func:`mask_definition`; a definition sent back with a masked value unchanged
keeps the stored secret (:func:`restore_secrets`), so editing a workflow in the
browser never needs, or overwrites, its secrets.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import yaml

from flowguard.errors import WorkflowInvalid
from flowguard.secrets import mask

# Secret fields per action type (a mapping such as ``headers`` is secret in every value).
# tests/api/test_definitions.py checks this against the SecretStr fields of the action models.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "slack": ("webhook_url",),
    "webhook": ("url", "headers", "secret"),
    "pagerduty": ("routing_key",),
}

_Slot = tuple[dict[str, Any], str]


def _actions(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, action mapping) for every action the document holds, breaker notice included."""
    if isinstance(doc.get("action"), dict):
        yield "action", doc["action"]
    actions = doc.get("actions")
    if isinstance(actions, list):
        for index, action in enumerate(actions):
            if isinstance(action, dict):
                yield f"actions.{index}", action
    breaker = doc.get("circuit_breaker")
    if isinstance(breaker, dict) and isinstance(breaker.get("notify"), dict):
        yield "circuit_breaker.notify", breaker["notify"]


def _secret_slots(doc: dict[str, Any]) -> Iterator[tuple[str, _Slot]]:
    """(field path, (container, key)) of every secret value in an author's mapping."""
    for where, action in _actions(doc):
        for name in SECRET_FIELDS.get(str(action.get("type")), ()):
            value = action.get(name)
            if isinstance(value, dict):
                for key in value:
                    yield f"{where}.{name}.{key}", (value, key)
            elif value is not None:
                yield f"{where}.{name}", (action, name)


def mask_definition(doc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy with every secret masked (``${ENV}`` references stay as written)."""
    masked = copy.deepcopy(doc)
    for _, (container, key) in _secret_slots(masked):
        value = container[key]
        container[key] = mask(value) if isinstance(value, str) else "***"
    return masked


def restore_secrets(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """``new`` with each still-masked secret replaced by the stored one at the same field path.

    A masked value only counts as unchanged when it equals the mask of the stored value
    there; anything else is what the author typed and is kept.
    """
    restored = copy.deepcopy(new)
    if old is None:
        return restored
    stored = {path: slot[0][slot[1]] for path, slot in _secret_slots(old)}
    for path, (container, key) in _secret_slots(restored):
        previous = stored.get(path)
        if isinstance(previous, str) and container[key] == mask(previous):
            container[key] = previous
    return restored


def to_yaml(doc: dict[str, Any]) -> str:
    """The seed's YAML format, keys in the author's order."""
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)


def from_yaml(text: str, *, source: str = "yaml") -> list[Any]:
    """Every document in ``text`` (a document may hold a list of workflows)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
        reason = getattr(exc, "problem", None) or str(exc)
        raise WorkflowInvalid(source, [(where, reason)]) from None
    return [item for doc in docs for item in (doc if isinstance(doc, list) else [doc])]
