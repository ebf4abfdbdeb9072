"""``flowguard api``: the HTTP API and the web UI, in their own process.

Its own process rather than inside ``flowguard worker``: the UI is scaled,
restarted and exposed on its own terms (one or two behind a proxy), while
workers scale with partitions and never listen on a port.
"""

from __future__ import annotations

import sys

import click
import uvicorn
from pydantic import ValidationError

from flowguard.api.app import create_app
from flowguard.api.settings import ApiSettings
from flowguard.cli.config import settings_or_exit
from flowguard.errors import ConfigError
from flowguard.settings_base import setting_problem


@click.command("api")
@click.option("--host", default=None, help="Listen address [FLOWGUARD_API_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [FLOWGUARD_API_PORT, 8080].")
def command(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (/openapi.json) and the web UI (/ui/)."""
    settings = settings_or_exit()  # FLOWGUARD_*: its errors name those variables
    try:
        api = ApiSettings()
        app = create_app(settings, api)
    except ValidationError as exc:
        click.echo(f"error: {setting_problem(exc, 'FLOWGUARD_API_')}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if not app.state.auth.known:
        click.echo(
            "error: FLOWGUARD_API_TOKENS is empty: nobody could sign in. Set it, e.g.\n"
            '  FLOWGUARD_API_TOKENS="me:admin:$(openssl rand -hex 16)"',
            err=True,
        )
        sys.exit(2)
    uvicorn.run(app, host=host or api.host, port=port if port is not None else api.port)
