"""JSON Schema for every public record, generated from the models.

The files are committed under ``topics/schemas/``; a test fails when the
models and the committed files drift apart, so a schema change is always a
visible, reviewed diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from flowguard.engine.workflow import Workflow
from topics.commands import Command, CommandResult
from topics.dlq import DeadLetter
from topics.events import Event
from topics.execution import EXECUTION_SCHEMA, ExecutionRecord
from topics.workflows import WorkflowVersion

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "topics" / "schemas"

_SCHEMAS: dict[str, tuple[str, Any]] = {
    "execution": (EXECUTION_SCHEMA, ExecutionRecord),
    "event": ("flowguard.event/1", Event),
    "command": ("flowguard.command/1", Command),
    "command-result": ("flowguard.command-result/1", CommandResult),
    "workflow-version": ("flowguard.workflow-version/1", WorkflowVersion),
    "workflow": ("flowguard.workflow/1", Workflow),
    "dlq": ("flowguard.dlq/1", DeadLetter),
}


#: Schemas other teams validate against (docs/execution-log.md). A later version of one adds
#: optional fields, so these are open to fields a reader does not know (``additionalProperties``
#: not false); flowguard's own models stay closed, so flowguard never writes an unknown field.
PUBLIC = frozenset({"execution"})


def _open(schema: Any) -> Any:
    """``schema`` without any ``"additionalProperties": false``, at every depth."""
    if isinstance(schema, dict):
        return {
            k: _open(v)
            for k, v in schema.items()
            if not (k == "additionalProperties" and v is False)
        }
    if isinstance(schema, list):
        return [_open(v) for v in schema]
    return schema


def schemas() -> dict[str, dict[str, Any]]:
    """File stem -> JSON Schema document, with ``$id`` set to the schema id."""
    result = {}
    for stem, (schema_id, model) in _SCHEMAS.items():
        if isinstance(model, type) and issubclass(model, BaseModel):
            body = model.model_json_schema(by_alias=True, mode="serialization")
        else:
            body = TypeAdapter(model).json_schema(by_alias=True, mode="serialization")
        if stem in PUBLIC:
            body = _open(body)
        result[stem] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": schema_id,
            **body,
        }
    return result


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, schema in schemas().items():
        path = directory / f"{stem}.schema.json"
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
