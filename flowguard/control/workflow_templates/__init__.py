"""The product page's four workflow templates, served from one place.

The YAML files next to this module are the templates exactly as the page writes them; the
web UI's "pick a template" and ``flowguard workflows`` both read them through here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from flowguard.control.workflow_files import load_workflows
from flowguard.engine.workflow import Workflow
from flowguard.errors import TemplateNotFound

TEMPLATE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Template:
    """One template: ``slug`` is its file name without ``.yaml`` and stays stable."""

    slug: str
    workflow: Workflow
    document: dict[str, Any]

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def description(self) -> str:
        return self.workflow.description

    @property
    def definition(self) -> dict[str, Any]:
        """The template as written, a fresh copy each time: callers edit it into a draft."""
        return copy.deepcopy(self.document)

    @property
    def path(self) -> Path:
        return TEMPLATE_DIR / f"{self.slug}.yaml"

    def text(self) -> str:
        """The YAML file itself, comments included (``flowguard workflows templates SLUG``)."""
        return self.path.read_text(encoding="utf-8")


@cache
def templates() -> tuple[Template, ...]:
    """Every shipped template, in file-name order; validated once per process."""
    return tuple(
        Template(Path(item.source).stem, item.workflow, item.document)
        for item in load_workflows(TEMPLATE_DIR)
    )


def template(slug: str) -> Template:
    """One template by slug (``auto-retry-network-errors``)."""
    for item in templates():
        if item.slug == slug:
            return item
    known = ", ".join(t.slug for t in templates())
    raise TemplateNotFound(f"template {slug!r}: no such template (known: {known})")
