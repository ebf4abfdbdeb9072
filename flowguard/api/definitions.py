"""Workflow definitions as the API shows and takes them: the author's mapping, secrets masked.

The stored definition is exactly what the author wrote, literal secrets included
(it is the only place they live). Everything the API sends goes through
:func:`flowguard.store.mask_definition`; a definition sent back with a masked
value unchanged keeps the stored secret (:func:`restore_secrets`), so editing a
workflow in the browser never needs, or overwrites, its secrets.
"""

from __future__ import annotations

from typing import Any

import yaml

from flowguard.errors import WorkflowInvalid
from flowguard.store import mask_definition


def _restore(new: Any, masked: Any, stored: Any) -> Any:
    """Walk ``new`` beside the stored value and its masked form, field path by field path."""
    if isinstance(new, dict) and isinstance(masked, dict) and isinstance(stored, dict):
        return {
            key: _restore(value, masked[key], stored[key]) if key in masked else value
            for key, value in new.items()
        }
    if isinstance(new, list) and isinstance(masked, list) and isinstance(stored, list):
        return [
            _restore(value, masked[i], stored[i]) if i < len(masked) else value
            for i, value in enumerate(new)
        ]
    # Only where masking changed the stored value can an equal incoming value be its mask.
    if isinstance(new, str) and new == masked and masked != stored:
        return stored
    return new


def restore_secrets(new: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """``new`` with each still-masked secret replaced by the stored one at the same field path.

    A masked value only counts as unchanged when it equals the mask of the stored value at
    the same path; anything else is what the author typed and is kept.
    """
    if stored is None:
        return dict(new)
    restored: dict[str, Any] = _restore(new, mask_definition(stored), stored)
    return restored


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
