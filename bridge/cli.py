"""``flowguard-bridge``: run one bridge next to one Celery cluster."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from bridge.app import serve
from bridge.settings import BridgeSettings
from flowguard import __version__, logs
from flowguard.errors import ConfigError, FlowguardError
from flowguard.logs import LogFormat


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowguard-bridge")
@click.option("--cluster", help="This cluster's name [FLOWGUARD_CLUSTER].")
@click.option(
    "--broker",
    help="The Celery broker URL, a secret (default: the app's broker_url) [FLOWGUARD_BROKER].",
)
@click.option(
    "-A",
    "--app",
    help="The cluster's Celery app, as `celery -A` takes it (proj.celery:app, found from the "
    "current directory): retries are routed by its task_routes [FLOWGUARD_APP].",
)
@click.option(
    "--config",
    help="A Celery configuration module read into the app, as `celery --config` "
    "(proj.celeryconfig) [FLOWGUARD_CONFIG].",
)
@click.option(
    "--kafka",
    "kafka_bootstrap_servers",
    help="Kafka bootstrap servers [FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS].",
)
@click.option(
    "--topic-prefix",
    help="Prefix of flowguard's topics (default: flowguard) [FLOWGUARD_TOPIC_PREFIX].",
)
@click.option(
    "--buffer-size",
    type=int,
    help="Events held while Kafka is down, then dropped [FLOWGUARD_BUFFER_SIZE].",
)
@click.option(
    "--dump",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also append the raw Celery events to FILE as JSON lines (what `flowguard replay` "
    "reads) [FLOWGUARD_DUMP].",
)
@click.option(
    "--no-commands",
    is_flag=True,
    help="Publish events only; carry out no commands [FLOWGUARD_COMMANDS=false].",
)
@click.option("--log-level", default="INFO", show_default=True)
def main(no_commands: bool, log_level: str, **flags: Any) -> None:
    """Stream a Celery cluster's events to Kafka, and carry out the commands for it.

    Every option but --log-level can also be set in the environment (in brackets), and so can
    every other setting: FLOWGUARD_<SETTING>, see docs/bridge.md.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    if no_commands:
        given["commands"] = False
    try:
        settings = BridgeSettings(**given)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            field = ".".join(str(p) for p in error["loc"])
            click.echo(f"error: {field}: {error['msg']} ({_where_set(field)})", err=True)
        sys.exit(2)
    configure_logging(log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:  # settings that validate alone but not together: like a bad value
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except FlowguardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


class _ConnectAttempts(logging.Filter):
    """aiokafka logs every failed connection attempt at ERROR. The bridge says itself, once,
    that Kafka is unreachable and once that it is back: below DEBUG, those lines are noise
    that repeats for as long as Kafka is away."""

    PREFIXES = ("Unable connect to", "Unable to update metadata from")
    #: Not an outage but a setting to fix, which no retry heals: always shown (the bridge's own
    #: line only says "unreachable").
    MISCONFIGURED = ("SaslAuthenticationFailed", "UnsupportedSaslMechanism", "CERTIFICATE_VERIFY")

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(self.PREFIXES)):
            return True
        return any(word in record.getMessage() for word in self.MISCONFIGURED)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log lines to stderr (text or JSON lines); aiokafka's per-attempt connection errors only
    at DEBUG."""
    logs.configure(level, log_format)
    if logging.getLevelName(level.upper()) != logging.DEBUG:
        logging.getLogger("aiokafka").addFilter(_ConnectAttempts())


def _where_set(field: str) -> str:
    """The flag (only if there is one) and the environment variable that set ``field``."""
    flags = [opt for param in main.params if param.name == field for opt in param.opts]
    variable = f"FLOWGUARD_{field.upper()}"
    return f"{flags[0]} or {variable}" if flags else variable


if __name__ == "__main__":
    main()
