"""``flowguard lint``: validate workflow files and warn on risky settings."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flowguard.cli.config import settings_or_exit
from flowguard.control.masking import refuse_references
from flowguard.control.workflow_files import load_workflows
from flowguard.engine.lint import lint, literal_secret_warnings
from flowguard.errors import WorkflowInvalid


@click.command("lint")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings.")
def command(paths: tuple[Path, ...], strict: bool) -> None:
    """Validate workflows (exit 2 if any is invalid) and print best-practice warnings."""
    invalid = warned = 0
    settings = settings_or_exit()
    policy = settings.secret_policy()
    for path in paths:
        try:
            loaded = load_workflows(path)
            for item in loaded:
                refuse_references(item.source, item.document, policy)
        except WorkflowInvalid as exc:
            click.echo(f"error: {exc}", err=True)
            invalid += 1
            continue
        for item in loaded:
            warnings = lint(item.workflow)
            if settings.secrets_key is None:
                warnings += literal_secret_warnings(item.workflow)
            warned += len(warnings)
            for warning in warnings:
                click.echo(
                    f"warning: {item.source}: workflow {item.workflow.name!r}: "
                    f"{warning.field}: {warning.message}"
                )
            if not warnings:
                click.echo(f"ok: {item.source}: workflow {item.workflow.name!r}")
    if invalid:
        sys.exit(2)
    if strict and warned:
        sys.exit(1)
