"""Turn parsed YAML documents into workflows, or into clear, field-named refusals.

Pure: takes mappings already read from YAML. The CLI, the API and the UI all
report errors with these messages (``action.delay_seconds: must be >= 0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from flowguard.engine.workflow import (
    Action,
    CircuitBreaker,
    Conditions,
    Trigger,
    Workflow,
    _normalize_action,
)
from flowguard.errors import WorkflowInvalid

Problem = tuple[str, str]

_ACTION_ADAPTER: TypeAdapter[Any] = TypeAdapter(Action)
_FRAGMENT_PARTS: dict[str, Any] = {
    "trigger": Trigger,
    "circuit_breaker": CircuitBreaker,
}


def _path(loc: tuple[int | str, ...], wrote_single_action: bool) -> str:
    parts = list(loc)
    if wrote_single_action and parts[:2] == ["actions", 0]:
        parts = ["action", *parts[2:]]
    # pydantic names the union member it tried ("slack", "function-after[...]"); users did not
    # write those, so drop them from the path.
    kept = [str(p) for p in parts if not (isinstance(p, str) and ("[" in p or p in _TAGS))]
    return ".".join(kept) or "(document)"


_TAGS = frozenset({"retry", "slack", "webhook", "pagerduty"})


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "union_tag_not_found":
        return "missing type: one of retry, slack, webhook, pagerduty"
    if kind == "union_tag_invalid":
        tag = (error.get("ctx") or {}).get("tag")
        return f"unknown type {tag!r}: expected one of retry, slack, webhook, pagerduty"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    return error["msg"].removeprefix("Value error, ")


def problems_of(exc: ValidationError, *, wrote_single_action: bool = False) -> list[Problem]:
    """(field path, reason) for each error. Never echoes input values: they may be secrets."""
    errors = exc.errors(include_url=False, include_input=True)
    # A container whose item failed is also reported "too short" (the failed item does not
    # count); the item's own error, however deep inside it, says it all.
    inside = {tuple(e["loc"][:n]) for e in errors for n in range(1, len(e["loc"]))}
    return [
        (_path(tuple(e["loc"]), wrote_single_action), _reason(e))
        for e in errors
        if not (e["type"] == "too_short" and tuple(e["loc"]) in inside)
    ]


def parse_workflow(data: Any, *, source: str, default_name: str | None = None) -> Workflow:
    """Validate one workflow document; ``default_name`` names a workflow that has no ``name``."""
    if not isinstance(data, Mapping):
        raise WorkflowInvalid(source, [("(document)", "a workflow must be a mapping")])
    doc = dict(data)
    if "name" not in doc and default_name is not None:
        doc["name"] = default_name
    try:
        return Workflow.model_validate(doc)
    except ValidationError as exc:
        label = f"{source}: workflow {doc.get('name')!r}" if "name" in doc else source
        raise WorkflowInvalid(
            label, problems_of(exc, wrote_single_action="action" in doc)
        ) from None


def parse_fragment(data: Any, *, source: str) -> dict[str, BaseModel | tuple[BaseModel, ...]]:
    """Validate the parts of a partial workflow, as the editor sends it while a user types.

    A fragment is a mapping of workflow parts (``trigger``, ``action``/``actions``,
    ``circuit_breaker``) or a bare conditions mapping. Each part present is
    validated on its own; nothing is required.
    """
    if not isinstance(data, Mapping):
        raise WorkflowInvalid(source, [("(document)", "a fragment must be a mapping")])
    if data and set(data) <= set(Conditions.model_fields):
        return {"conditions": _validate(Conditions, data, source, "")}
    unknown = set(data) - {*_FRAGMENT_PARTS, "action", "actions", "name", "description", "enabled"}
    if unknown:
        raise WorkflowInvalid(source, [(k, "unknown field") for k in sorted(unknown)])
    parts: dict[str, BaseModel | tuple[BaseModel, ...]] = {}
    for key, model in _FRAGMENT_PARTS.items():
        if key in data:
            parts[key] = _validate(model, data[key], source, key)
    actions = [data["action"]] if "action" in data else data.get("actions", [])
    label = "action" if "action" in data else "actions"
    validated = []
    for index, action in enumerate(actions):
        where = label if label == "action" else f"actions.{index}"
        validated.append(_validate_action(_normalize_action(action), source, where))
    if validated:
        parts["actions"] = tuple(validated)
    return parts


def _join(where: str, path: str) -> str:
    if not where:
        return path
    return where if path == "(document)" else f"{where}.{path}"


def _validate(model: type[BaseModel], value: Any, source: str, where: str) -> BaseModel:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise WorkflowInvalid(source, [(_join(where, p), r) for p, r in problems_of(exc)]) from None


def _validate_action(value: Any, source: str, where: str) -> BaseModel:
    try:
        result: BaseModel = _ACTION_ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise WorkflowInvalid(source, [(_join(where, p), r) for p, r in problems_of(exc)]) from None
    return result
