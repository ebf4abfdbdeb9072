"""The settings a ``flowguard`` subcommand runs with, or a one-line refusal naming the variable."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from flowguard.settings import Settings, get_settings
from flowguard.settings_base import setting_problem


def settings_or_exit() -> Settings:
    """This process's settings; a bad one (a SASL setting without its protocol, say) ends the
    command with exit 2 and ``error: FLOWGUARD_<NAME>: <reason>``, not pydantic's traceback."""
    try:
        return get_settings()
    except ValidationError as exc:
        click.echo(f"error: {setting_problem(exc)}", err=True)
        sys.exit(2)
