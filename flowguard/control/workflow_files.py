"""Reading workflow YAML from disk: one file, several documents, a list, or a directory.

Validation itself is pure (:mod:`flowguard.engine.documents`); this module only
reads files and names what it read in every error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flowguard.engine.documents import parse_workflow
from flowguard.engine.workflow import Workflow
from flowguard.errors import WorkflowInvalid

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Loaded:
    source: str
    workflow: Workflow
    document: dict[str, Any]


def iter_documents(path: Path) -> Iterator[tuple[str, Any]]:
    """(source label, document) for each workflow document under ``path``, in a fixed order."""
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES) if path.is_dir() else [path]
    )
    for file in files:
        yield from _documents(file)


def _documents(file: Path) -> Iterator[tuple[str, Any]]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowInvalid(str(file), [("(file)", exc.strerror or str(exc))]) from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
        raise WorkflowInvalid(
            str(file), [(where, getattr(exc, "problem", None) or str(exc))]
        ) from None
    items = [item for doc in docs for item in (doc if isinstance(doc, list) else [doc])]
    for number, item in enumerate(items, start=1):
        label = str(file) if len(items) == 1 else f"{file}#{number}"
        yield label, item


def load_workflows(path: Path) -> list[Loaded]:
    """Every workflow under ``path``, validated; ids must be unique. Raises ``WorkflowInvalid``."""
    loaded: list[Loaded] = []
    seen: dict[str, str] = {}
    for source, doc in iter_documents(path):
        default = Path(source.split("#")[0]).stem + (
            "" if "#" not in source else "-" + source.split("#")[1]
        )
        workflow = parse_workflow(doc, source=source, default_name=default)
        if workflow.id in seen:
            raise WorkflowInvalid(
                source, [("id", f"{workflow.id!r} is also defined in {seen[workflow.id]}")]
            )
        seen[workflow.id] = source
        loaded.append(Loaded(source, workflow, doc))
    if not loaded:
        raise WorkflowInvalid(str(path), [("(path)", "no workflow found (.yaml or .yml)")])
    return loaded
