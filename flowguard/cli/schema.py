"""``flowguard schema``: write JSON Schema for every public record."""

from __future__ import annotations

from pathlib import Path

import click

from flowguard.control.schema import SCHEMA_DIR, write


@click.command("schema")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=SCHEMA_DIR, show_default=True
)
def command(out: Path) -> None:
    """Write <out>/<record>.schema.json for events, commands, workflows and executions."""
    for path in write(out):
        click.echo(str(path))
