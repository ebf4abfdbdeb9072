"""Workflow definitions as the API shows and takes them: the author's mapping, secrets masked.

The stored definition is exactly what the author wrote, literal secrets included
(it is the only place they live). Everything the API sends goes through
:func:`flowguard.control.masking.mask_definition`; a definition sent back with a masked
value unchanged keeps the stored secret (:func:`restore_secrets`), so editing a
workflow in the browser never needs, or overwrites, its secrets. A mask stands for a
stored secret only while its action still sends where it did; otherwise, and wherever
nothing stored matches, the masked value is refused rather than saved or sent.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from flowguard.control.masking import SECRET_KEYS, looks_masked
from flowguard.control.secrets import mask
from flowguard.control.store import WorkflowStore
from flowguard.engine.workflow import slugify
from flowguard.errors import ApiProblem, WorkflowInvalid

# Where an action sends: restoring its other secrets is only safe while this is unchanged.
_DESTINATION_KEYS = ("url", "webhook_url", "routing_key")
_CHANGED_DESTINATION = "re-enter the secret when you change the URL (or the action type)"
_UNRESTORABLE = "is still masked and no stored secret matches it: enter the secret again"


def _holders(definition: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(normalized path, path as written, mapping) of every place secrets live.

    ``action: {...}`` and ``actions: [{...}]`` mean the same, so both count as ``actions.0``:
    the editor sends ``actions`` back for a workflow written with ``action``.
    """
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    single = definition.get("action")
    actions = definition.get("actions")
    if isinstance(single, Mapping):
        found.append(("actions.0", "action", single))
    elif isinstance(actions, list):
        found.extend(
            (f"actions.{i}", f"actions.{i}", a)
            for i, a in enumerate(actions)
            if isinstance(a, Mapping)
        )
    breaker = definition.get("circuit_breaker")
    notify = breaker.get("notify") if isinstance(breaker, Mapping) else None
    if isinstance(notify, Mapping):
        found.append(("circuit_breaker.notify", "circuit_breaker.notify", notify))
    return found


def _kind(holder: Mapping[str, Any]) -> Any:
    return holder.get("type", "retry")


def _masked_as(new: Any, stored: Any) -> bool:
    """Is ``new`` what the API showed for ``stored`` (its mask, where masking changed it)?"""
    shown = mask(stored) if isinstance(stored, str) else "***"
    return isinstance(new, str) and new == shown and shown != stored


def _same_destination(new: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Does ``new`` still send where ``stored`` did (the same value, or its mask unchanged)?"""
    if _kind(new) != _kind(stored):
        return False
    for key in _DESTINATION_KEYS:
        was, now = stored.get(key), new.get(key)
        if now != was and not _masked_as(now, was):
            return False
    return True


def _source(
    path: str, new: Mapping[str, Any], stored: dict[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The stored mapping ``new``'s masked secrets come from: the one at the same path, or the
    only one with the same type and destination (the action moved); None if there is none."""
    here = stored.get(path)
    if here is not None and _same_destination(new, here):
        return here
    moved = [s for s in stored.values() if _same_destination(new, s)]
    return moved[0] if len(moved) == 1 else None


def _restore_holder(
    written: str,
    holder: dict[str, Any],
    source: Mapping[str, Any] | None,
    problems: list[tuple[str, str]],
    *,
    replaced: bool,
) -> None:
    """Put the stored secrets back into ``holder`` where the masks are unchanged.

    ``replaced``: no stored secret source, but something was stored at this path (the
    author changed where the action sends).
    """
    typed_destination = any(
        isinstance(holder.get(k), str) and not looks_masked(holder[k]) for k in _DESTINATION_KEYS
    )
    reason = _CHANGED_DESTINATION if typed_destination and replaced else _UNRESTORABLE
    stored_headers = source.get("headers") if source is not None else None
    headers = holder.get("headers")
    slots: list[tuple[str, dict[str, Any], str, Any]] = [
        (f"{written}.{key}", holder, key, source.get(key) if source is not None else None)
        for key in holder
        if key in SECRET_KEYS
    ]
    if isinstance(headers, dict):
        theirs = stored_headers if isinstance(stored_headers, Mapping) else {}
        slots.extend((f"{written}.headers.{k}", headers, k, theirs.get(k)) for k in headers)
    for field, mapping, key, was in slots:
        if was is not None and _masked_as(mapping[key], was):
            mapping[key] = copy.deepcopy(was)
        value = mapping[key]
        if isinstance(value, str) and looks_masked(value):
            problems.append((field, reason))


def restore_secrets(new: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """``new`` with each masked secret the author left unchanged replaced by the stored one.

    A mask only stands for the stored secret of the same action (matched by position, or by
    type and destination when actions moved), and only while that action's destination (URL,
    webhook URL, routing key, type) is unchanged: a header or signing secret is never sent
    somewhere its author did not choose. A value that still looks masked afterwards is
    refused (:class:`WorkflowInvalid`, naming the field), never saved or sent as it is.
    """
    restored: dict[str, Any] = copy.deepcopy(dict(new))
    theirs = {path: holder for path, _, holder in _holders(stored or {})}
    problems: list[tuple[str, str]] = []
    for path, written, holder in _holders(restored):
        assert isinstance(holder, dict)  # a deep copy of JSON/YAML: plain dicts
        source = _source(path, holder, theirs)
        replaced = source is None and path in theirs
        _restore_holder(written, holder, source, problems, replaced=replaced)
    if problems:
        raise WorkflowInvalid("definition", problems)
    return restored


def stored_for(
    store: WorkflowStore, draft: Mapping[str, Any], workflow_id: str | None = None
) -> dict[str, Any] | None:
    """The live stored definition a draft's masks may stand for: ``workflow_id``'s, else the
    one with the draft's id (read without validating: masked URLs do not validate yet)."""
    if workflow_id is None:
        given, name = draft.get("id"), draft.get("name")
        workflow_id = (
            given if isinstance(given, str) else (slugify(name) if isinstance(name, str) else None)
        )
    latest = store.latest(workflow_id) if workflow_id else None
    return latest.definition if latest is not None and not latest.deleted else None


DEFAULT_MAX_YAML_BYTES = 1024 * 1024


def from_yaml(
    text: str, *, source: str = "yaml", max_bytes: int = DEFAULT_MAX_YAML_BYTES
) -> list[Any]:
    """Every document in ``text`` (a document may hold a list of workflows).

    Text over ``max_bytes`` is refused (413, field ``yaml``) before the parser sees it.
    """
    size = len(text.encode())
    if size > max_bytes:
        raise ApiProblem(
            413,
            "too_large",
            "the YAML is larger than the limit",
            [("yaml", f"{size} bytes; at most {max_bytes} (FLOWGUARD_API_MAX_YAML_BYTES)")],
        )
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
        reason = getattr(exc, "problem", None) or str(exc)
        raise WorkflowInvalid(source, [(where, reason)]) from None
    return [item for doc in docs for item in (doc if isinstance(doc, list) else [doc])]
