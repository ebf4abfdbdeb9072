"""The ``flowguard`` command. Each subcommand lives in its own module."""

from __future__ import annotations

import importlib

import click

from flowguard import __version__

# Module name -> attribute holding the click command. Order is the order in --help.
_COMMANDS: tuple[str, ...] = (
    "api",
    "doctor",
    "history",
    "lint",
    "rehearse",
    "remediate",
    "replay",
    "schema",
    "topics",
    "worker",
    "workflows",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowguard")
def main() -> None:
    """flowguard: automated responses to Celery task failures."""


for _name in _COMMANDS:
    _module = importlib.import_module(f"flowguard.cli.{_name}")
    main.add_command(_module.command)
