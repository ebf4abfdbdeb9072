"""flowguard.control.workflow_templates: the one place the UI and `flowguard workflows` read
workflow templates from."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import flowguard
from flowguard.cli import main as cli
from flowguard.control.workflow_templates import TEMPLATE_DIR, template, templates
from flowguard.engine.documents import parse_workflow
from flowguard.errors import TemplateNotFound


def test_four_templates_by_slug_each_valid_and_self_contained() -> None:
    assert [t.slug for t in templates()] == [
        "alert-on-payment-processing-failures",
        "auto-retry-network-errors",
        "escalate-after-3-failures",
        "recover-orphaned-tasks",
    ]
    for item in templates():
        # What the store will be handed: valid on its own, with the same id.
        assert parse_workflow(item.definition, source=item.slug).id == item.workflow.id


def test_definition_is_a_fresh_copy() -> None:
    draft = template("auto-retry-network-errors").definition
    draft["name"] = "mine"
    assert template("auto-retry-network-errors").definition["name"] == "Auto-retry network errors"


def test_unknown_slug_lists_the_known_ones() -> None:
    with pytest.raises(TemplateNotFound, match="known: alert-on-payment-processing-failures, "):
        template("nope")


def test_cli_lists_and_prints_templates() -> None:
    listing = CliRunner().invoke(cli, ["workflows", "templates"]).output.splitlines()
    assert listing[1].split(maxsplit=1) == [
        "auto-retry-network-errors",
        "Auto-retry network errors",
    ]
    printed = CliRunner().invoke(cli, ["workflows", "templates", "recover-orphaned-tasks"])
    assert printed.output == template("recover-orphaned-tasks").text()
    assert CliRunner().invoke(cli, ["workflows", "templates", "nope"]).exit_code == 1


def test_the_templates_are_in_the_package_data() -> None:
    """An installed (not editable) flowguard carries only what package-data names: a path
    left behind by a move would ship no templates."""
    pyproject = Path(flowguard.__file__).resolve().parents[1] / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    root = Path(flowguard.__file__).resolve().parent
    shipped = {path for pattern in globs["flowguard"] for path in root.glob(pattern)}
    yaml_files = set(TEMPLATE_DIR.glob("*.yaml"))
    assert len(yaml_files) == 4
    assert yaml_files <= shipped
